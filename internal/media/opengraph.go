package media

import (
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// parseHTML reads a page's OpenGraph properties (og:*), falling back to
// <title> and <meta name="description"> for og:title and og:description.
// Only the first value of a repeated property counts.
func parseHTML(r io.Reader, contentType string) (map[string]string, error) {
	r, err := charset.NewReader(r, contentType)
	if err != nil {
		return nil, err
	}
	z := html.NewTokenizer(r)
	og := map[string]string{}
	var title, description string
	inTitle := false
	set := func(k, v string) {
		if _, ok := og[k]; ok || len(og) >= previewMaxKeys {
			return
		}
		og[k] = clip(v)
	}
	for {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err() == io.EOF {
				goto done
			}
			return nil, z.Err()
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch atom.Lookup(name) {
			case atom.Title:
				inTitle = title == ""
			case atom.Meta:
				if !hasAttr {
					continue
				}
				var prop, nm, content string
				for {
					k, v, more := z.TagAttr()
					switch string(k) {
					case "property":
						prop = strings.ToLower(strings.TrimSpace(string(v)))
					case "name":
						nm = strings.ToLower(strings.TrimSpace(string(v)))
					case "content":
						content = strings.TrimSpace(string(v))
					}
					if !more {
						break
					}
				}
				switch {
				case strings.HasPrefix(prop, "og:"):
					set(prop, content)
				case strings.HasPrefix(nm, "og:"):
					set(nm, content)
				case nm == "description" && description == "":
					description = content
				}
			case atom.Body:
				// Metadata lives in <head>; stop once the body starts
				// unless the page has none yet.
				if len(og) > 0 || title != "" {
					goto done
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if atom.Lookup(name) == atom.Title {
				inTitle = false
			}
		case html.TextToken:
			if inTitle {
				title += string(z.Text())
			}
		}
	}
done:
	if _, ok := og["og:title"]; !ok {
		if t := strings.Join(strings.Fields(title), " "); t != "" {
			og["og:title"] = clip(t)
		}
	}
	if _, ok := og["og:description"]; !ok && description != "" {
		og["og:description"] = clip(description)
	}
	return og, nil
}

// clip shortens s to previewMaxValue characters.
func clip(s string) string {
	if utf8.RuneCountInString(s) <= previewMaxValue {
		return s
	}
	return string([]rune(s)[:previewMaxValue]) + "…"
}
