package moderation

import (
	"bufio"
	"os"
	"slices"
	"testing"
)

// labelled reads testdata/ham.txt and testdata/spam.txt: short messages
// written for these tests, one a line.
func labelled(t *testing.T) (ham, spam []string) {
	t.Helper()
	read := func(name string) []string {
		f, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if sc.Text() != "" {
				out = append(out, sc.Text())
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return read("ham.txt"), read("spam.txt")
}

// split puts every third message in the test set.
func split(msgs []string) (train, test []string) {
	for i, m := range msgs {
		if i%3 == 2 {
			test = append(test, m)
		} else {
			train = append(train, m)
		}
	}
	return train, test
}

// TestClassifierPrecisionRecall trains the classifier on two thirds of
// the labelled set and reports its precision and recall on the rest at
// the threshold the service flags at (docs/moderation.md quotes them).
func TestClassifierPrecisionRecall(t *testing.T) {
	ham, spam := labelled(t)
	if len(ham) < 100 || len(spam) < 100 {
		t.Fatalf("labelled set too small: %d ham, %d spam", len(ham), len(spam))
	}
	hamTrain, hamTest := split(ham)
	spamTrain, spamTest := split(spam)
	c := NewClassifier()
	for _, m := range hamTrain {
		c.Learn(Tokens(m), Ham)
	}
	for _, m := range spamTrain {
		c.Learn(Tokens(m), Spam)
	}
	var tp, fp, fn int
	for _, m := range spamTest {
		if c.SpamProbability(Tokens(m)) >= spamThreshold {
			tp++
		} else {
			fn++
			t.Logf("missed spam: %q (%.2f)", m, c.SpamProbability(Tokens(m)))
		}
	}
	for _, m := range hamTest {
		if p := c.SpamProbability(Tokens(m)); p >= spamThreshold {
			fp++
			t.Logf("ham flagged: %q (%.2f)", m, p)
		}
	}
	precision := float64(tp) / float64(tp+fp)
	recall := float64(tp) / float64(tp+fn)
	t.Logf("classifier on the labelled set (%d ham, %d spam; trained on %d, tested on %d): precision %.3f, recall %.3f at threshold %.2f",
		len(ham), len(spam), len(hamTrain)+len(spamTrain), len(hamTest)+len(spamTest), precision, recall, spamThreshold)
	if precision < 0.95 || recall < 0.8 {
		t.Errorf("precision %.3f (want at least 0.95), recall %.3f (want at least 0.8)", precision, recall)
	}
}

func TestClassifierSaveLoad(t *testing.T) {
	c := NewClassifier()
	c.Learn(Tokens("free bitcoin at https://btc-double.io"), Spam)
	c.Learn(Tokens("good morning everyone"), Ham)
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	d := NewClassifier()
	if err := d.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	msg := Tokens("free bitcoin now")
	if got, want := d.SpamProbability(msg), c.SpamProbability(msg); got != want || got == 0 {
		t.Fatalf("loaded model gives %v, saved one %v", got, want)
	}
	c.Unlearn(Tokens("free bitcoin at https://btc-double.io"), Spam)
	if h, s := c.Docs(); h != 1 || s != 0 || c.SpamProbability(msg) != 0 {
		t.Fatalf("after Unlearn: docs %d/%d, p %v", h, s, c.SpamProbability(msg))
	}
}

func TestTokens(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{
		{"Hello, World!", []string{"hello", "world"}},
		{"see https://Example.org/x?y=1 now", []string{"see", "link", "link:example.org", "now"}},
		{"www.shop.test deals", []string{"link", "link:shop.test", "deals"}},
		{"ping @bob:example.org 42 times", []string{"ping", "mention", "num", "times"}},
		{"a b", nil},
	} {
		if got := Tokens(tc.body); !slices.Equal(got, tc.want) {
			t.Errorf("Tokens(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}
