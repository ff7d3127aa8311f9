package moderation

import (
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"unicode"
)

// Classifier is a multinomial naive Bayes model over a message's tokens:
// words, the hosts of its links and markers for links, mentions and
// numbers. It learns from labelled messages (Learn, Unlearn) and gives the
// probability that a message is spam (SpamProbability). It is not safe for
// concurrent use; the service guards it.
type Classifier struct {
	docs   [2]int64             // messages learnt, by class
	total  [2]int64             // tokens learnt, by class
	counts map[string]*[2]int64 // token -> count by class
	// maxVocabulary bounds the distinct tokens it keeps (its memory and
	// the size of each save); new tokens past it are not learnt.
	maxVocabulary int
}

// MaxVocabulary is how many distinct tokens a Classifier keeps.
const MaxVocabulary = 100_000

// Classes.
const (
	Ham  = 0
	Spam = 1
)

// NewClassifier returns an empty model.
func NewClassifier() *Classifier {
	return &Classifier{counts: map[string]*[2]int64{}, maxVocabulary: MaxVocabulary}
}

// Vocabulary returns how many distinct tokens the model keeps.
func (c *Classifier) Vocabulary() int { return len(c.counts) }

// Learn adds a message's tokens to a class.
func (c *Classifier) Learn(tokens []string, class int) { c.add(tokens, class, 1) }

// Unlearn takes back an earlier Learn of the same tokens.
func (c *Classifier) Unlearn(tokens []string, class int) { c.add(tokens, class, -1) }

func (c *Classifier) add(tokens []string, class int, d int64) {
	c.docs[class] = max(0, c.docs[class]+d)
	for _, t := range tokens {
		n := c.counts[t]
		if n == nil {
			if d < 0 || (c.maxVocabulary > 0 && len(c.counts) >= c.maxVocabulary) {
				continue
			}
			n = new([2]int64)
			c.counts[t] = n
		}
		if n[class]+d < 0 {
			continue
		}
		n[class] += d
		c.total[class] += d
		if n[0] == 0 && n[1] == 0 {
			delete(c.counts, t)
		}
	}
}

// Docs returns how many messages of each class the model has learnt.
func (c *Classifier) Docs() (ham, spam int64) { return c.docs[Ham], c.docs[Spam] }

// SpamProbability is P(spam | tokens) with Laplace smoothing; tokens the
// model never saw count for neither class. Without messages of both
// classes it is 0.
func (c *Classifier) SpamProbability(tokens []string) float64 {
	if c.docs[Ham] == 0 || c.docs[Spam] == 0 {
		return 0
	}
	vocab := float64(len(c.counts))
	logOdds := math.Log(float64(c.docs[Spam])) - math.Log(float64(c.docs[Ham]))
	known := 0
	for _, t := range tokens {
		n, ok := c.counts[t]
		if !ok {
			continue
		}
		known++
		pSpam := (float64(n[Spam]) + 1) / (float64(c.total[Spam]) + vocab)
		pHam := (float64(n[Ham]) + 1) / (float64(c.total[Ham]) + vocab)
		logOdds += math.Log(pSpam) - math.Log(pHam)
	}
	if known == 0 {
		return 0
	}
	return 1 / (1 + math.Exp(-logOdds))
}

// maxTokens bounds the tokens taken from one message.
const maxTokens = 200

// Tokens splits a message body into the classifier's tokens: lower-case
// words of 2 to 30 letters or digits, "link:" and the host of each link
// (and "link" once per link), "mention" for each user ID, "num" for each
// number.
func Tokens(body string) []string {
	var out []string
	for _, f := range strings.Fields(body) {
		if len(out) >= maxTokens {
			break
		}
		if host := linkHost(f); host != "" {
			out = append(out, "link", "link:"+host)
			continue
		}
		if strings.HasPrefix(f, "@") && strings.Contains(f, ":") {
			out = append(out, "mention")
			continue
		}
		for _, w := range strings.FieldsFunc(strings.ToLower(f), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}) {
			switch {
			case isNumber(w):
				out = append(out, "num")
			case len(w) >= 2 && len(w) <= 30:
				out = append(out, w)
			}
		}
	}
	return out
}

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return w != ""
}

// linkHost returns the lower-case host of a word that is a link
// (http(s)://... or www....), or "".
func linkHost(w string) string {
	w = strings.Trim(w, "<>()[]\"',.!?")
	lw := strings.ToLower(w)
	switch {
	case strings.HasPrefix(lw, "http://"), strings.HasPrefix(lw, "https://"):
	case strings.HasPrefix(lw, "www."):
		lw = "http://" + lw
	default:
		return ""
	}
	u, err := url.Parse(lw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	return strings.TrimPrefix(u.Hostname(), "www.")
}

// links returns the hosts of a body's links.
func links(body string) []string {
	var out []string
	for _, f := range strings.Fields(body) {
		if h := linkHost(f); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// classifierJSON is the saved form of a Classifier.
type classifierJSON struct {
	Docs   [2]int64            `json:"docs"`
	Counts map[string][2]int64 `json:"counts"`
}

// MarshalJSON saves the model.
func (c *Classifier) MarshalJSON() ([]byte, error) {
	out := classifierJSON{Docs: c.docs, Counts: make(map[string][2]int64, len(c.counts))}
	for t, n := range c.counts {
		out.Counts[t] = *n
	}
	return json.Marshal(out)
}

// UnmarshalJSON loads a saved model.
func (c *Classifier) UnmarshalJSON(b []byte) error {
	var in classifierJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	c.docs, c.total, c.counts = in.Docs, [2]int64{}, make(map[string]*[2]int64, len(in.Counts))
	for t, n := range in.Counts {
		c.counts[t] = &n
		c.total[Ham] += n[Ham]
		c.total[Spam] += n[Spam]
	}
	return nil
}
