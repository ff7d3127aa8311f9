package assistant

import (
	"strings"
	"unicode"
)

// Language is a detected language: its ISO 639-1 code and English name.
type Language struct {
	Code, Name string
}

// stopwordLanguages are the languages of Latin script told apart by their
// most common words.
var stopwordLanguages = []struct {
	Language
	words string
}{
	{Language{"en", "English"}, "the and is are was to of in that it you for on with this be have not we they what will would can"},
	{Language{"de", "German"}, "der die das und ist nicht ich du wir sie ein eine zu mit auf für den dem von wie auch noch sind haben"},
	{Language{"fr", "French"}, "le la les et est un une des du je tu nous vous pas que qui dans pour sur avec ce sont avoir être"},
	{Language{"es", "Spanish"}, "el la los las y es un una de que no en por para con se lo del al como pero está son yo"},
	{Language{"it", "Italian"}, "il lo la gli le e è un una di che non per con sono del della come ma anche io tu noi"},
	{Language{"pt", "Portuguese"}, "o a os as e é um uma de que não em para com por do da se mas como são eu você nós"},
	{Language{"nl", "Dutch"}, "de het een en is niet ik je wij zij van op te met voor dat die zijn maar ook naar heb"},
	{Language{"sv", "Swedish"}, "och är att det en ett inte jag du vi de på med för som har av till om men så"},
	{Language{"pl", "Polish"}, "i w nie na się że to jest z do jak ale co tak po o jestem mam być czy"},
}

// scriptLanguages are told apart by their script alone.
var scriptLanguages = []struct {
	Language
	table *unicode.RangeTable
}{
	{Language{"ru", "Russian"}, unicode.Cyrillic},
	{Language{"el", "Greek"}, unicode.Greek},
	{Language{"ar", "Arabic"}, unicode.Arabic},
	{Language{"he", "Hebrew"}, unicode.Hebrew},
	{Language{"ja", "Japanese"}, unicode.Hiragana},
	{Language{"ja", "Japanese"}, unicode.Katakana},
	{Language{"ko", "Korean"}, unicode.Hangul},
	{Language{"zh", "Chinese"}, unicode.Han},
	{Language{"hi", "Hindi"}, unicode.Devanagari},
	{Language{"th", "Thai"}, unicode.Thai},
}

var stopwordSets = func() []map[string]bool {
	sets := make([]map[string]bool, len(stopwordLanguages))
	for i, l := range stopwordLanguages {
		sets[i] = map[string]bool{}
		for _, w := range strings.Fields(l.words) {
			sets[i][w] = true
		}
	}
	return sets
}()

// DetectLanguage guesses text's language: by script for non-Latin
// scripts (Japanese kana before Chinese ideographs), else by counting the
// common words of each language. ok is false when nothing stands out.
func DetectLanguage(text string) (lang Language, ok bool) {
	if l, ok := detectScript(text); ok {
		return l, true
	}
	words := tokens(text)
	best, bestScore, second := -1, 0, 0
	for i, set := range stopwordSets {
		score := 0
		for _, w := range words {
			if set[w] {
				score++
			}
		}
		switch {
		case score > bestScore:
			best, second, bestScore = i, bestScore, score
		case score > second:
			second = score
		}
	}
	if best < 0 || bestScore == second {
		return Language{}, false
	}
	return stopwordLanguages[best].Language, true
}

// detectScript names the language of the first non-Latin script that
// makes up at least a fifth of text's letters.
func detectScript(text string) (Language, bool) {
	counts := make([]int, len(scriptLanguages))
	letters := 0
	for _, r := range text {
		if !unicode.IsLetter(r) {
			continue
		}
		letters++
		for i, s := range scriptLanguages {
			if unicode.Is(s.table, r) {
				counts[i]++
				break
			}
		}
	}
	for i, n := range counts {
		if letters > 0 && n*5 >= letters && n > 0 {
			return scriptLanguages[i].Language, true
		}
	}
	return Language{}, false
}

// tokens splits text into lower-case words (letters and digits).
func tokens(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}
