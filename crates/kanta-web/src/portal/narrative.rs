//! FHIR narrative XHTML made safe to render (R-VIEW-2): the stored `div` is sanitized with ammonia
//! to the FHIR narrative subset (text structure, lists, tables, links), with no scripts, event
//! handlers, styles, ids, classes, images or forms. [`SafeHtml`] can only be made here, so the
//! templates' `|safe` takes nothing else.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Markup that has been through [`sanitize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeHtml(String);

impl SafeHtml {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

/// Tags of the FHIR narrative subset kept (headings are not kept, only their text: the page's own
/// heading structure stays intact; images are not kept: they would load from elsewhere).
const TAGS: [&str; 33] = [
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "hr",
    "i",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "ul",
];
const TABLE_TAGS: [&str; 5] = ["td", "tfoot", "th", "thead", "tr"];

fn builder() -> &'static ammonia::Builder<'static> {
    static B: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    B.get_or_init(|| {
        let mut tags: HashSet<&str> = TAGS.into_iter().collect();
        tags.extend(TABLE_TAGS);
        let mut tag_attributes: HashMap<&str, HashSet<&str>> = HashMap::new();
        tag_attributes.insert("a", ["href"].into_iter().collect());
        tag_attributes.insert("td", ["colspan", "rowspan"].into_iter().collect());
        tag_attributes.insert("th", ["colspan", "rowspan", "scope"].into_iter().collect());
        let mut b = ammonia::Builder::empty();
        b.tags(tags)
            .tag_attributes(tag_attributes)
            .generic_attributes(["lang", "title"].into_iter().collect())
            .url_schemes(["https", "http", "mailto"].into_iter().collect())
            .link_rel(Some("noopener noreferrer nofollow"))
            .strip_comments(true);
        b
    })
}

/// The narrative `div`, safe to place in a page.
pub fn sanitize(div: &str) -> SafeHtml {
    SafeHtml(builder().clean(div).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_is_kept() {
        let html = sanitize(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hb <b>112</b></p><ul><li>a</li></ul>\
             <table><tr><th scope=\"col\">x</th></tr><tr><td colspan=\"2\">1 &lt; 2</td></tr></table></div>",
        );
        for want in [
            "<p>Hb <b>112</b></p>",
            "<li>a</li>",
            "<th scope=\"col\">x</th>",
            "<td colspan=\"2\">1 &lt; 2</td>",
        ] {
            assert!(html.as_str().contains(want), "{want}: {}", html.as_str());
        }
    }

    #[test]
    fn nothing_active_survives() {
        for (evil, gone) in [
            ("<div><script>alert(1)</script>ok</div>", "<script"),
            ("<div><img src=x onerror=alert(1)>ok</div>", "onerror"),
            (
                "<div><a href=\"javascript:alert(1)\">x</a></div>",
                "javascript:",
            ),
            ("<div><p style=\"background:url(x)\">x</p></div>", "style"),
            ("<div><p onclick=\"alert(1)\">x</p></div>", "onclick"),
            ("<div><iframe src=\"https://x\"></iframe></div>", "iframe"),
            ("<div><svg><script>alert(1)</script></svg></div>", "script"),
            ("<div><p id=\"main\" class=\"skip\">x</p></div>", "id="),
            ("<div><!-- <script>x</script> --></div>", "<!--"),
            (
                "<div><form action=\"https://x\"><input name=a></form></div>",
                "<form",
            ),
            ("<div><h1>Otsikko</h1></div>", "<h1"),
        ] {
            let out = sanitize(evil);
            assert!(!out.as_str().contains(gone), "{evil} → {}", out.as_str());
        }
        // The heading's text stays.
        assert!(sanitize("<div><h1>Otsikko</h1></div>")
            .as_str()
            .contains("Otsikko"));
        // Links get rel attributes and keep their target.
        let a = sanitize("<div><a href=\"https://kanta.fi/\">k</a></div>");
        assert!(a.as_str().contains("href=\"https://kanta.fi/\""));
        assert!(a.as_str().contains("noopener"));
    }

    /// The templates mark nothing `|safe` but a `SafeHtml` (bound as `h` from a `Some(SafeHtml)`).
    #[test]
    fn only_sanitized_markup_is_marked_safe() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let mut uses = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for (i, _) in text.match_indices("|safe") {
                assert!(
                    text[..i].ends_with("h.as_str()"),
                    "{}",
                    &text[i.saturating_sub(60)..i]
                );
                uses += 1;
            }
        }
        assert_eq!(uses, 2, "record.html and visits.html");
    }
}
