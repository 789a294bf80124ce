//! Translations: one Fluent file per language (`locales/{fi,sv,en}.ftl`), compiled into the binary.
//! A test checks that every key exists in all three and that every key the templates use exists.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use std::sync::OnceLock;

/// A language of the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    Fi,
    Sv,
    En,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Fi, Lang::Sv, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fi => "fi",
            Lang::Sv => "sv",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The language's name in itself (for the language switch).
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::Fi => "Suomeksi",
            Lang::Sv => "På svenska",
            Lang::En => "In English",
        }
    }

    /// The first of our languages named in an `Accept-Language` header, by the client's order.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut tagged: Vec<(f32, Lang)> = header
            .split(',')
            .filter_map(|part| {
                let mut it = part.trim().split(';');
                let tag = it.next()?.trim().to_ascii_lowercase();
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q=")?.parse::<f32>().ok())
                    .unwrap_or(1.0);
                let primary = tag.split('-').next()?;
                Lang::from_code(primary).map(|l| (q, l))
            })
            .collect();
        tagged.sort_by(|a, b| b.0.total_cmp(&a.0));
        tagged.first().map(|(_, l)| *l)
    }

    fn source(self) -> &'static str {
        match self {
            Lang::Fi => include_str!("../../locales/fi.ftl"),
            Lang::Sv => include_str!("../../locales/sv.ftl"),
            Lang::En => include_str!("../../locales/en.ftl"),
        }
    }
}

struct Bundles(Vec<(Lang, FluentBundle<FluentResource>)>);

fn bundles() -> &'static Bundles {
    static B: OnceLock<Bundles> = OnceLock::new();
    B.get_or_init(|| {
        Bundles(
            Lang::ALL
                .into_iter()
                .map(|lang| {
                    // A resource with syntax errors still yields the messages it could parse; the
                    // tests refuse such a file, so in a build that passed them this keeps everything.
                    let res = FluentResource::try_new(lang.source().to_string())
                        .unwrap_or_else(|(res, _)| res);
                    let id: unic_langid::LanguageIdentifier =
                        lang.code().parse().unwrap_or_default();
                    let mut bundle = FluentBundle::new_concurrent(vec![id]);
                    // No Unicode isolation marks: the text goes into HTML, where they are noise.
                    bundle.set_use_isolating(false);
                    let _ = bundle.add_resource(res);
                    (lang, bundle)
                })
                .collect(),
        )
    })
}

/// The text of `key` in `lang`, with `args` filled in. A missing key yields the key itself (and
/// the tests fail), never a panic.
pub fn tr(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let Some((_, bundle)) = bundles().0.iter().find(|(l, _)| *l == lang) else {
        return key.to_string();
    };
    let Some(pattern) = bundle.get_message(key).and_then(|m| m.value()) else {
        tracing::warn!(key, lang = lang.code(), "missing translation");
        return key.to_string();
    };
    let mut fargs = FluentArgs::new();
    for (k, v) in args {
        fargs.set(*k, v.to_string());
    }
    let mut errors = vec![];
    bundle
        .format_pattern(pattern, (!args.is_empty()).then_some(&fargs), &mut errors)
        .into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::collections::BTreeSet;

    fn keys(lang: Lang) -> BTreeSet<String> {
        let res = FluentResource::try_new(lang.source().to_string())
            .unwrap_or_else(|(_, e)| panic!("{} has syntax errors: {e:?}", lang.code()));
        res.entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_key_exists_in_finnish_swedish_and_english() {
        let fi = keys(Lang::Fi);
        assert!(fi.len() > 20, "{fi:?}");
        for lang in [Lang::Sv, Lang::En] {
            let other = keys(lang);
            let missing: Vec<_> = fi.difference(&other).collect();
            let extra: Vec<_> = other.difference(&fi).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{}: missing {missing:?}, not in fi {extra:?}",
                lang.code()
            );
        }
    }

    /// Every key the templates and the portal code use exists.
    #[test]
    fn every_key_used_exists() {
        let fi = keys(Lang::Fi);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let mut sources: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/portal");
        for e in std::fs::read_dir(src).unwrap() {
            sources.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        sources.push(include_str!("../archivist.rs").to_string());
        let mut used = BTreeSet::new();
        for text in &sources {
            // Keys are string literals with one of these prefixes (audit reasons avoid them).
            for prefix in [
                "\"login",
                "\"logout",
                "\"logged-",
                "\"error-",
                "\"idp-",
                "\"session-",
                "\"confirm-",
                "\"home-",
                "\"front-",
                "\"app-",
                "\"signed-",
                "\"skip-",
                "\"language-",
                "\"footer-",
                "\"back-",
                "\"disclosures-",
                "\"action-",
                "\"section-",
                "\"filter-",
                "\"record-",
                "\"archivist-",
                "\"acting-",
                "\"mandates-",
            ] {
                for (i, _) in text.match_indices(prefix) {
                    let rest = &text[i + 1..];
                    if let Some(end) = rest.find('"') {
                        let key = &rest[..end];
                        if !key.ends_with('-')
                            && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                        {
                            used.insert(key.to_string());
                        }
                    }
                }
            }
        }
        assert!(used.len() > 10, "{used:?}");
        let missing: Vec<_> = used.iter().filter(|k| !fi.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "keys used but not translated: {missing:?}"
        );
    }

    #[test]
    fn accept_language_picks_by_quality() {
        assert_eq!(Lang::from_accept_language("sv-FI,fi;q=0.8"), Some(Lang::Sv));
        assert_eq!(
            Lang::from_accept_language("de, en;q=0.5, fi;q=0.9"),
            Some(Lang::Fi)
        );
        assert_eq!(Lang::from_accept_language("de"), None);
        assert_eq!(tr(Lang::Sv, "no-such-key", &[]), "no-such-key");
    }
}
