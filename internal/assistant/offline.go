package assistant

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
)

// Offline is the engine that needs no model: extractive summaries that
// rank the conversation's sentences, answers that quote the messages that
// match best, and no translation or drafting (ErrNeedsModel).
type Offline struct{}

// Name implements Engine.
func (Offline) Name() string { return "the offline engine" }

// sentence is one sentence of a message, as the summary ranks it.
type sentence struct {
	msg   int // index in the messages
	text  string
	words []string // content words, lower-case
	score float64
}

// cueWords mark sentences that carry what was decided or is to be done.
var cueWords = map[string]float64{
	"decided": 2, "decision": 2, "agreed": 2, "agree": 1, "conclusion": 2, "plan": 1, "deadline": 2,
	"will": 0.5, "must": 1, "need": 0.5, "todo": 1, "action": 1, "important": 1, "release": 0.5,
	"ship": 0.5, "blocked": 1, "problem": 1, "fixed": 1, "bug": 0.5, "vote": 1, "approved": 2,
}

// Summarize implements Engine: it scores each sentence by how often the
// conversation uses its content words (a sentence that says what many
// others talk about ranks high), adds weight for cue words (decided,
// deadline, ...), discounts very short sentences, then takes the best
// that do not repeat one already taken, in the conversation's order,
// each cut to 300 characters, with its author and a link to its message.
func (Offline) Summarize(ctx context.Context, msgs []Message, n int) (string, error) {
	if len(msgs) == 0 {
		return "Nothing was said in that time.", nil
	}
	picked := rankSentences(msgs, n)
	var b strings.Builder
	fmt.Fprintf(&b, "Summary of %d messages from %d people:\n", len(msgs), countSenders(msgs))
	for _, s := range picked {
		m := msgs[s.msg]
		fmt.Fprintf(&b, "• %s (%s, %s)\n", quoteLine(s.text), m.Sender, m.Link)
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

// rankSentences returns the n best sentences of msgs, in their order.
func rankSentences(msgs []Message, n int) []sentence {
	var all []sentence
	freq := map[string]int{}
	for i, m := range msgs {
		for _, text := range splitSentences(m.Body) {
			words := contentWords(text)
			if len(words) == 0 {
				continue
			}
			for _, w := range dedupe(words) {
				freq[w]++
			}
			all = append(all, sentence{msg: i, text: text, words: words})
		}
	}
	maxFreq := 1
	for _, f := range freq {
		maxFreq = max(maxFreq, f)
	}
	for i := range all {
		s := &all[i]
		var sum float64
		for _, w := range dedupe(s.words) {
			if freq[w] > 1 { // a word said once tells nothing of the topic
				sum += float64(freq[w]) / float64(maxFreq)
			}
			sum += cueWords[w]
		}
		s.score = sum / math.Sqrt(float64(len(s.words)))
		if len(s.words) < 4 {
			s.score *= 0.5
		}
	}
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return -cmpFloat(all[a].score, all[b].score)
	})
	var picked []sentence
	for _, i := range order {
		if len(picked) == n {
			break
		}
		if !repeats(all[i], picked) {
			picked = append(picked, all[i])
		}
	}
	slices.SortStableFunc(picked, func(a, b sentence) int { return a.msg - b.msg })
	return picked
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// repeats reports whether s shares more than half its words with a
// sentence already picked.
func repeats(s sentence, picked []sentence) bool {
	for _, p := range picked {
		if jaccard(s.words, p.words) > 0.5 {
			return true
		}
	}
	return false
}

func jaccard(a, b []string) float64 {
	set := map[string]int{}
	for _, w := range dedupe(a) {
		set[w] |= 1
	}
	for _, w := range dedupe(b) {
		set[w] |= 2
	}
	both := 0
	for _, v := range set {
		if v == 3 {
			both++
		}
	}
	return float64(both) / float64(len(set))
}

func dedupe(words []string) []string {
	out := slices.Clone(words)
	slices.Sort(out)
	return slices.Compact(out)
}

func countSenders(msgs []Message) int {
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Sender.String()] = true
	}
	return len(seen)
}

// splitSentences splits a message into sentences at . ! ? and line ends.
func splitSentences(body string) []string {
	var out []string
	start := 0
	runes := []rune(body)
	for i, r := range runes {
		end := r == '\n' || ((r == '.' || r == '!' || r == '?') && (i+1 == len(runes) || unicode.IsSpace(runes[i+1])))
		if !end {
			continue
		}
		if s := strings.TrimSpace(string(runes[start : i+1])); strings.Trim(s, ".!?") != "" {
			out = append(out, s)
		}
		start = i + 1
	}
	if s := strings.TrimSpace(string(runes[start:])); s != "" {
		out = append(out, s)
	}
	return out
}

// stopwords are left out of the words that rank sentences and messages:
// the common words of every language DetectLanguage knows, and chat
// fillers.
var stopwords = func() map[string]bool {
	set := map[string]bool{}
	for _, l := range stopwordLanguages {
		for _, w := range strings.Fields(l.words) {
			set[w] = true
		}
	}
	for _, w := range strings.Fields(`a an i me my our us he she him her his its them their there here then than so
		but or if at by from as do does did done has had been being am were just also very really too yes no ok okay
		lol haha thanks thank hi hello hey morning good great cool yeah yep nope sure all any some one about up out
		into over after before again how why when where who which what's it's i'm don't can't that's let's`) {
		set[w] = true
	}
	delete(set, "will") // a cue word
	return set
}()

// contentWords returns text's words without stopwords and one-letter
// words.
func contentWords(text string) []string {
	var out []string
	for _, w := range tokens(text) {
		if len([]rune(w)) > 1 && !stopwords[w] {
			out = append(out, w)
		}
	}
	return out
}

// Answer implements Engine: it quotes the sources with their authors and
// links.
func (Offline) Answer(ctx context.Context, question string, sources []Message) (string, error) {
	if len(sources) == 0 {
		return "I found nothing about that in what I read in this room.", nil
	}
	var b strings.Builder
	b.WriteString("Here is what was said about it:\n")
	for _, m := range sources {
		fmt.Fprintf(&b, "> %s\n— %s, %s %s\n", quoteLine(m.Body), m.Sender, m.Time.UTC().Format("2006-01-02 15:04"), m.Link)
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

// quoteLine puts a message on one line, cut to 300 characters.
func quoteLine(body string) string {
	body = strings.Join(strings.Fields(body), " ")
	if r := []rune(body); len(r) > 300 {
		body = string(r[:300]) + "…"
	}
	return body
}

// Translate implements Engine: offline, it cannot.
func (Offline) Translate(ctx context.Context, text, target string) (string, error) {
	return "", ErrNeedsModel
}

// Draft implements Engine: offline, it cannot.
func (Offline) Draft(ctx context.Context, msgs []Message, instruction string) (string, error) {
	return "", ErrNeedsModel
}

// search ranks msgs against query with BM25 over their content words and
// returns the best n with a positive score, best first.
func search(msgs []Message, query string, n int) []Message {
	q := dedupe(contentWords(query))
	if len(q) == 0 || len(msgs) == 0 {
		return nil
	}
	docs := make([][]string, len(msgs))
	df := map[string]int{}
	total := 0
	for i, m := range msgs {
		docs[i] = contentWords(m.Body)
		total += len(docs[i])
		for _, w := range dedupe(docs[i]) {
			df[w]++
		}
	}
	avg := float64(total) / float64(len(msgs))
	asksWhen := slices.Contains(tokens(query), "when")
	const k1, b = 1.2, 0.75
	type scored struct {
		i     int
		score float64
	}
	var hits []scored
	for i, doc := range docs {
		tf := map[string]int{}
		for _, w := range doc {
			tf[w]++
		}
		var score float64
		for _, w := range q {
			if tf[w] == 0 {
				continue
			}
			idf := math.Log(1 + (float64(len(msgs))-float64(df[w])+0.5)/(float64(df[w])+0.5))
			f := float64(tf[w])
			score += idf * f * (k1 + 1) / (f + k1*(1-b+b*float64(len(doc))/avg))
		}
		if score == 0 {
			continue
		}
		if strings.HasSuffix(strings.TrimSpace(msgs[i].Body), "?") {
			score *= 0.5 // a question seldom answers one
		}
		if asksWhen && mentionsTime(doc) {
			score += 1.5
		}
		hits = append(hits, scored{i, score})
	}
	slices.SortStableFunc(hits, func(a, b scored) int { return -cmpFloat(a.score, b.score) })
	out := make([]Message, 0, min(n, len(hits)))
	for _, h := range hits[:min(n, len(hits))] {
		out = append(out, msgs[h.i])
	}
	return out
}

// timeWords name days, months and times of day.
var timeWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday
		tonight week month year january february march april may june july august september october november december
		jan feb mar apr jun jul aug sep oct nov dec noon midnight morning evening am pm`) {
		timeWords[w] = true
	}
}

// mentionsTime reports whether words name a date or time (a day, month,
// "3rd", "14:30").
func mentionsTime(words []string) bool {
	for _, w := range words {
		if timeWords[w] {
			return true
		}
		if len(w) > 2 && unicode.IsDigit(rune(w[0])) && strings.ContainsAny(w[len(w)-2:], "stndrh") {
			return true // 1st, 2nd, 3rd, 4th
		}
	}
	return false
}
