//! The medicines database (R-RX-3): products, substitution groups, retail prices with VAT and
//! reimbursement categories, in dated versions (published on the 1st and 15th of each month).
//!
//! One version is one file in the format of `docs/medicines-database.md`: UTF-8, semicolons, a
//! header naming the format and the day it is valid from, then one product per line. [`parse`] is
//! the importer: it checks every line and says which one is wrong. [`Database::on`] answers with
//! the version in force on a day. Pure: the caller reads the files.

use std::collections::BTreeMap;
use std::fmt;
use time::Date;

/// Lines a file may have (the national database has some 15,000 packages).
pub const MAX_LINES: usize = 200_000;
/// Characters a field may have.
pub const MAX_FIELD: usize = 200;

/// A reimbursement category (Kela): basic 40 %, lower special 65 %, higher special 100 %.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reimbursement {
    Basic,
    LowerSpecial,
    HigherSpecial,
}

impl Reimbursement {
    pub fn percent(self) -> u32 {
        match self {
            Reimbursement::Basic => 40,
            Reimbursement::LowerSpecial => 65,
            Reimbursement::HigherSpecial => 100,
        }
    }
}

/// One package of a product (a VNR number names a package).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// The Nordic article number: six digits.
    pub vnr: String,
    pub name: String,
    pub strength: String,
    pub form: String,
    /// Units in one package.
    pub package_size: u32,
    /// The unit the package size counts (tabl, ml, g, annos…).
    pub unit: String,
    pub atc: String,
    /// Fimea's substitution group: products of one group may be substituted for each other.
    pub substitution_group: Option<String>,
    /// The retail price of one package, VAT (14 %) included, in cents.
    pub price_cents: u64,
    pub reimbursement: Option<Reimbursement>,
    /// Prescription only (R), or also sold without a prescription (K).
    pub prescription_only: bool,
}

impl Product {
    /// "Atorvastatin Demo 20 mg tabletti, 30 tabl".
    pub fn label(&self) -> String {
        format!(
            "{} {} {}, {} {}",
            self.name, self.strength, self.form, self.package_size, self.unit
        )
    }
}

/// One published version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub valid_from: Date,
    products: BTreeMap<String, Product>,
}

impl Version {
    pub fn product(&self, vnr: &str) -> Option<&Product> {
        self.products.get(vnr)
    }

    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Whether `dispensed` may be given out for `prescribed` (the same package, or one of its
    /// substitution group).
    pub fn substitutable(&self, prescribed: &str, dispensed: &str) -> bool {
        if prescribed == dispensed {
            return true;
        }
        match (self.product(prescribed), self.product(dispensed)) {
            (Some(a), Some(b)) => {
                a.substitution_group.is_some() && a.substitution_group == b.substitution_group
            }
            _ => false,
        }
    }
}

/// Every version loaded, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Database {
    versions: Vec<Version>,
}

impl Database {
    pub fn new(mut versions: Vec<Version>) -> Database {
        versions.sort_by_key(|v| v.valid_from);
        versions.dedup_by_key(|v| v.valid_from);
        Database { versions }
    }

    /// The version in force on `day`: the newest valid from that day or earlier.
    pub fn on(&self, day: Date) -> Option<&Version> {
        self.versions.iter().rev().find(|v| v.valid_from <= day)
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }
}

/// What is wrong with a file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

const COLUMNS: [&str; 11] = [
    "VNR",
    "NAME",
    "STRENGTH",
    "FORM",
    "PACKAGE_SIZE",
    "UNIT",
    "ATC",
    "SUBSTITUTION_GROUP",
    "PRICE_EUR",
    "REIMBURSEMENT",
    "STATUS",
];

/// Read one version (the importer).
pub fn parse(text: &str) -> Result<Version, ParseError> {
    let err = |line: usize, m: String| ParseError { line, message: m };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (_, magic) = lines
        .next()
        .ok_or_else(|| err(1, "the file is empty".into()))?;
    if magic.trim_start_matches('\u{feff}').trim() != "# kanta-medicines 1" {
        return Err(err(
            1,
            "the first line must be '# kanta-medicines 1' (the format and its version)".into(),
        ));
    }
    let (n, from) = lines.next().ok_or_else(|| {
        err(
            2,
            "the second line must be '# valid-from: YYYY-MM-DD'".into(),
        )
    })?;
    let valid_from = from
        .trim()
        .strip_prefix("# valid-from:")
        .and_then(|d| {
            Date::parse(
                d.trim(),
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()
        })
        .ok_or_else(|| {
            err(
                n,
                "the second line must be '# valid-from: YYYY-MM-DD'".into(),
            )
        })?;
    let (n, header) = lines
        .next()
        .ok_or_else(|| err(3, "the column header line is missing".into()))?;
    if header.trim().split(';').collect::<Vec<_>>() != COLUMNS {
        return Err(err(
            n,
            format!("the column header must be {}", COLUMNS.join(";")),
        ));
    }
    let mut products = BTreeMap::new();
    for (n, line) in lines {
        if n > MAX_LINES {
            return Err(err(n, format!("more than {MAX_LINES} lines")));
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(';').map(str::trim).collect();
        if f.len() != COLUMNS.len() {
            return Err(err(
                n,
                format!("{} fields, {} expected", f.len(), COLUMNS.len()),
            ));
        }
        if let Some((i, _)) = f.iter().enumerate().find(|(_, v)| v.len() > MAX_FIELD) {
            return Err(err(
                n,
                format!("{} is over {MAX_FIELD} characters", COLUMNS[i]),
            ));
        }
        let vnr = f[0];
        if vnr.len() != 6 || !vnr.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(n, format!("VNR '{vnr}' is not six digits")));
        }
        for (i, name) in [(1, "NAME"), (3, "FORM"), (5, "UNIT")] {
            if f[i].is_empty() {
                return Err(err(n, format!("{name} is empty")));
            }
        }
        let package_size: u32 = f[4]
            .parse()
            .ok()
            .filter(|&s| s > 0 && s <= 100_000)
            .ok_or_else(|| {
                err(
                    n,
                    format!("PACKAGE_SIZE '{}' is not a whole number 1–100000", f[4]),
                )
            })?;
        let atc = f[6];
        if !(atc.len() <= 7
            && !atc.is_empty()
            && atc.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && atc.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(err(n, format!("ATC '{atc}' is not an ATC code")));
        }
        let group = (!f[7].is_empty()).then(|| f[7].to_string());
        if group.as_deref().is_some_and(|g| g.len() > 6) {
            return Err(err(n, "SUBSTITUTION_GROUP is over 6 characters".into()));
        }
        let price_cents = price(f[8]).ok_or_else(|| {
            err(
                n,
                format!("PRICE_EUR '{}' is not a price such as 12,34", f[8]),
            )
        })?;
        let reimbursement = match f[9] {
            "" => None,
            "40" => Some(Reimbursement::Basic),
            "65" => Some(Reimbursement::LowerSpecial),
            "100" => Some(Reimbursement::HigherSpecial),
            other => {
                return Err(err(
                    n,
                    format!("REIMBURSEMENT '{other}' is not one of 40, 65, 100 or empty"),
                ))
            }
        };
        let prescription_only = match f[10] {
            "R" => true,
            "K" => false,
            other => return Err(err(n, format!("STATUS '{other}' is not R or K"))),
        };
        let product = Product {
            vnr: vnr.to_string(),
            name: f[1].to_string(),
            strength: f[2].to_string(),
            form: f[3].to_string(),
            package_size,
            unit: f[5].to_string(),
            atc: atc.to_string(),
            substitution_group: group,
            price_cents,
            reimbursement,
            prescription_only,
        };
        if products.insert(vnr.to_string(), product).is_some() {
            return Err(err(n, format!("VNR {vnr} appears twice")));
        }
    }
    Ok(Version {
        valid_from,
        products,
    })
}

/// "12,34" or "12.34" (euros) → cents.
fn price(s: &str) -> Option<u64> {
    let s = s.replace(',', ".");
    let (e, c) = s.split_once('.').unwrap_or((&s, "00"));
    if e.is_empty() || e.len() > 7 || c.len() != 2 {
        return None;
    }
    if !e.bytes().chain(c.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(e.parse::<u64>().ok()? * 100 + c.parse::<u64>().ok()?)
}

/// Cents as euros the Finnish way: "12,34 €".
pub fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "−" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02} €", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const FILE: &str = "# kanta-medicines 1\n# valid-from: 2026-12-01\nVNR;NAME;STRENGTH;FORM;PACKAGE_SIZE;UNIT;ATC;SUBSTITUTION_GROUP;PRICE_EUR;REIMBURSEMENT;STATUS\n100001;Atorva A;20 mg;tabletti;30;tabl;C10AA05;1001;9,87;40;R\n100002;Atorva B;20 mg;tabletti;30;tabl;C10AA05;1001;7.50;40;R\n100003;Parasetamoli;500 mg;tabletti;20;tabl;N02BE01;;3,10;;K\n";

    #[test]
    fn a_file_is_read_with_its_groups_and_prices() {
        let v = parse(FILE).unwrap();
        assert_eq!(v.valid_from, date!(2026 - 12 - 01));
        assert_eq!(v.len(), 3);
        let a = v.product("100001").unwrap();
        assert_eq!(a.price_cents, 987);
        assert_eq!(a.reimbursement, Some(Reimbursement::Basic));
        assert_eq!(v.product("100002").unwrap().price_cents, 750);
        assert!(v.substitutable("100001", "100002"));
        assert!(v.substitutable("100003", "100003"));
        assert!(!v.substitutable("100001", "100003"), "another group");
        assert!(!v.substitutable("100003", "100001"), "no group");
        assert!(!v.substitutable("100001", "999999"), "unknown");
        assert_eq!(euros(-237), "−2,37 €");
    }

    #[test]
    fn every_wrong_line_is_named() {
        let bad = |line: &str| {
            let text = FILE.to_string() + line + "\n";
            parse(&text).unwrap_err()
        };
        for (line, want) in [
            ("12345;X;1;t;1;t;A;;1,00;;R", "six digits"),
            ("100009;X;1;t;0;t;A;;1,00;;R", "PACKAGE_SIZE"),
            ("100009;X;1;t;1;t;a1;;1,00;;R", "ATC"),
            ("100009;X;1;t;1;t;A;;1,0;;R", "PRICE_EUR"),
            ("100009;X;1;t;1;t;A;;1,00;50;R", "REIMBURSEMENT"),
            ("100009;X;1;t;1;t;A;;1,00;;Q", "STATUS"),
            ("100009;X;1;t;1;t;A;;1,00;R", "fields"),
            ("100001;X;1;t;1;t;A;;1,00;;R", "twice"),
            ("100009;;1;t;1;t;A;;1,00;;R", "NAME"),
        ] {
            let e = bad(line);
            assert_eq!(e.line, 7, "{line}");
            assert!(e.message.contains(want), "{line}: {}", e.message);
        }
        assert_eq!(parse("").unwrap_err().line, 1);
        assert_eq!(
            parse("# kanta-medicines 1\n# valid-from: 2026-13-01\n")
                .unwrap_err()
                .line,
            2
        );
    }

    #[test]
    fn the_version_in_force_on_a_day() {
        let v1 = parse(FILE).unwrap();
        let v2 = parse(&FILE.replace("2026-12-01", "2026-12-15")).unwrap();
        let db = Database::new(vec![v2, v1]);
        assert_eq!(db.on(date!(2026 - 11 - 30)), None);
        assert_eq!(
            db.on(date!(2026 - 12 - 14)).unwrap().valid_from,
            date!(2026 - 12 - 01)
        );
        assert_eq!(
            db.on(date!(2026 - 12 - 15)).unwrap().valid_from,
            date!(2026 - 12 - 15)
        );
    }
}
