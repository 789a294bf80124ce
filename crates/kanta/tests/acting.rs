#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Acting for others end to end (R-MINOR, R-PROXY, R-ACT, R-OPS-2, R-OPS-3): the real binary in
//! demo mode — its built-in identification service, its population register and its built-in
//! mandate registry spoken to over HTTP by the production client — walked by each demo guardian,
//! right-holder, guardian of interests and proxy, through the switch, the records, the functions
//! they may not use, the way back, a mutual authorisation, a revocation, and the mandate service
//! being down.

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KANTA: &str = env!("CARGO_BIN_EXE_kanta");

struct Server {
    child: Child,
    base: String,
    dir: std::path::PathBuf,
    people: HashMap<String, String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The demo people by given name → HETU (`kanta demo people`).
fn demo_people() -> HashMap<String, String> {
    let out = Command::new(KANTA)
        .args(["demo", "people"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let name = v["name"].as_str().unwrap();
            let given = name.split(' ').next().unwrap().to_string();
            (given, v["hetu"].as_str().unwrap().to_string())
        })
        .collect()
}

/// `kanta serve --demo` on a free port with its own data directory and `config` (TOML).
fn start(name: &str, config: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("kanta-acting-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("kanta.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(KANTA)
        .arg("--data-dir")
        .arg(&dir)
        .arg("--config")
        .arg(&cfg)
        .args([
            "--log-format",
            "json",
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("kanta is listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let addr = v["fields"]["addr"].as_str().unwrap_or_default().to_string();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the demo never listened");
    Server {
        child,
        base: format!("http://{addr}"),
        dir,
        people: demo_people(),
    }
}

struct Browser<'a> {
    s: &'a Server,
    http: reqwest::Client,
}

struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

impl Page {
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let i = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf in {}", self.body));
        let rest = &self.body[i + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(s: &'a Server) -> Browser<'a> {
        Browser {
            s,
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.s.base)
        }
    }

    async fn page(r: reqwest::Response) -> Page {
        Page {
            status: r.status(),
            location: r
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(self.url(path))
            .header("origin", &self.s.base)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }

    /// Log in as the demo person `who` through the built-in identification service, and confirm.
    async fn login(&self, who: &str) {
        let hetu = &self.s.people[who];
        let first = self.get("/login").await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        // The test service's page holds the checked request under an interaction id.
        let page = self.get(&first.location).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let marker = "name=\"interaction\" value=\"";
        let at = page.body.find(marker).expect("an interaction id") + marker.len();
        let interaction = page.body[at..].split('"').next().unwrap().to_string();
        let form: Vec<(String, String)> = vec![
            ("interaction".into(), interaction),
            ("hetu".into(), hetu.clone()),
            ("method".into(), "bank".into()),
        ];
        let r = self
            .http
            .post(self.url("/test-idp/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let back = Self::page(r).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        let cb = self.get(&back.location).await;
        assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.body);
        let confirm = self.get("/confirm").await;
        let r = self.post("/confirm", &[("csrf", &confirm.csrf())]).await;
        assert_eq!(r.location, "/");
        // R-INFO-1: the information notice first, for an adult who has not received it.
        let front = self.get("/").await;
        if front.status == StatusCode::SEE_OTHER && front.location == "/notice" {
            let notice = self.get("/notice").await;
            let r = self
                .post("/notice", &[("csrf", &notice.csrf()), ("received", "yes")])
                .await;
            assert_eq!(r.location, "/data-use?done=notice", "{}", r.body);
        }
    }

    async fn csrf(&self) -> String {
        self.get("/act-for").await.csrf()
    }

    /// Switch to act for a person from the act-for list.
    async fn switch_to(&self, who: &str) -> Page {
        let csrf = self.csrf().await;
        let hetu = self.s.people[who].clone();
        self.post(
            "/act-for",
            &[("csrf", &csrf), ("via", "register"), ("person", &hetu)],
        )
        .await
    }

    async fn back_to_self(&self) {
        let csrf = self.csrf().await;
        let r = self.post("/act-for/self", &[("csrf", &csrf)]).await;
        assert_eq!(
            (r.status, r.location.as_str()),
            (StatusCode::SEE_OTHER, "/")
        );
    }

    /// The HPA flow: to the mandate service's selection page, choose `principal` (or cancel).
    async fn choose_adult(&self, principal: Option<&str>) -> Page {
        let csrf = self.csrf().await;
        let start = self.post("/act-for/mandate", &[("csrf", &csrf)]).await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let selection = self.get(&start.location).await;
        assert_eq!(selection.status, StatusCode::OK, "{}", selection.body);
        let url = reqwest::Url::parse(&start.location).unwrap();
        let mut form: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != "lang")
            .collect();
        match principal {
            Some(p) => {
                let hetu = self.s.people[p].clone();
                assert!(
                    selection.body.contains(&hetu),
                    "{p} is not offered: {}",
                    selection.body
                );
                form.push(("principal".into(), hetu));
            }
            None => form.push(("cancel".into(), "1".into())),
        }
        let r = self
            .http
            .post(self.url("/test-mandates/oauth/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let back = Self::page(r).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        self.get(&back.location).await
    }
}

/// The visit titles a visits page shows (every visit's title is an `<h2>`/`<h3>` text in the page;
/// the test looks for the demo's titles).
fn shows(page: &Page, title: &str) -> bool {
    page.body.contains(title)
}

const SANNI_SHOWN: [&str; 3] = ["Astman seuranta", "Urheiluvamma", "Kouluterveydenhuolto"];
const SANNI_HIDDEN: [&str; 3] = ["Nuorisovastaanotto", "Iho-oireet", "Silmien tarkastus"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardians_right_holders_and_proxies_see_what_the_rules_allow() {
    let s = start("walk", "mandate_recheck_seconds = 1\n");

    // Aino (joint custody, coded): acts for Sanni (14). Sanni's visits by the code recorded at each
    // and her age then (R-MINOR-3/4).
    let aino = Browser::new(&s);
    aino.login("Aino").await;
    let list = aino.get("/act-for").await;
    assert!(list.body.contains("Sanni Virtanen") && list.body.contains("Eetu Virtanen"));
    let before = aino.get("/visits").await;
    let switched = aino.switch_to("Sanni").await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER, "{}", switched.body);
    let front = aino.get("/").await;
    assert!(
        front
            .body
            .contains("Katselet henkilön Sanni Virtanen tietoja")
            && front.body.contains("huoltajana"),
        "{}",
        front.body
    );
    assert!(
        !front.body.contains("href=\"/disclosures\""),
        "disclosure log offered"
    );
    let visits = aino.get("/visits").await;
    assert_eq!(visits.status, StatusCode::OK);
    for t in SANNI_SHOWN {
        assert!(shows(&visits, t), "{t} not shown to Aino");
    }
    for t in SANNI_HIDDEN {
        assert!(!shows(&visits, t), "{t} shown to Aino");
    }
    assert_ne!(before.body, visits.body);
    // Asked for directly: refused with a translated page (R-VIEW-5).
    let d = aino.get("/disclosures").await;
    assert_eq!(d.status, StatusCode::FORBIDDEN);
    assert!(d.body.contains("lang=\"fi\""));
    // One click back to her own data.
    aino.back_to_self().await;
    let front = aino.get("/").await;
    assert!(!front.body.contains("Katselet henkilön"));
    assert_eq!(aino.get("/disclosures").await.status, StatusCode::OK);

    // Mikko (the other joint guardian) sees the same (R-MINOR-2).
    let mikko = Browser::new(&s);
    mikko.login("Mikko").await;
    mikko.switch_to("Sanni").await;
    let v = mikko.get("/visits").await;
    for t in SANNI_SHOWN {
        assert!(shows(&v, t), "{t} not shown to Mikko");
    }
    for t in SANNI_HIDDEN {
        assert!(!shows(&v, t), "{t} shown to Mikko");
    }

    // Pekka (sole guardian) and Leena (right to information): Lotta's visit at 8 is shown, the
    // one at 11 without a code is not; Leena is told she can only see.
    for who in ["Pekka", "Leena"] {
        let b = Browser::new(&s);
        b.login(who).await;
        let r = b.switch_to("Lotta").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{who}: {}", r.body);
        let v = b.get("/visits").await;
        assert!(shows(&v, "Rannemurtuma"), "{who}: {}", v.body);
        assert!(!shows(&v, "Vatsakipu"), "{who}");
        let front = b.get("/").await;
        if who == "Leena" {
            assert!(
                front.body.contains("tiedonsaantioikeudella"),
                "{}",
                front.body
            );
        }
    }

    // Johan: Elsa's own non-disclosure marker blocks (R-MINOR-7): not offered, refused if asked.
    let johan = Browser::new(&s);
    johan.login("Johan").await;
    let list = johan.get("/act-for").await;
    assert!(
        list.body.contains("Lapsella on turvakielto"),
        "{}",
        list.body
    );
    let r = johan.switch_to("Elsa").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Ritva, guardian of interests: refused.
    let ritva = Browser::new(&s);
    ritva.login("Ritva").await;
    assert_eq!(ritva.switch_to("Matti").await.status, StatusCode::FORBIDDEN);

    // Kaisa (non-disclosure marker) cannot act for Onni until she confirms the mutual
    // authorisation Ville proposed (R-MINOR-6); Ville can.
    let ville = Browser::new(&s);
    ville.login("Ville").await;
    assert_eq!(ville.switch_to("Onni").await.status, StatusCode::SEE_OTHER);
    let kaisa = Browser::new(&s);
    kaisa.login("Kaisa").await;
    let r = kaisa.switch_to("Onni").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("turvakielto"), "{}", r.body);
    let manage = kaisa.get("/test-mandates/manage").await;
    assert_eq!(manage.status, StatusCode::OK, "{}", manage.body);
    let id = {
        let marker = "name=\"op\" value=\"confirm\"><input type=\"hidden\" name=\"id\" value=\"";
        let i = manage
            .body
            .find(marker)
            .expect("a confirmable authorisation");
        let rest = &manage.body[i + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let r = kaisa
        .post(
            "/test-mandates/manage",
            &[("csrf", &manage.csrf()), ("op", "confirm"), ("id", &id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = kaisa.switch_to("Onni").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(shows(&kaisa.get("/visits").await, "Neuvola"));

    // Hanna: Matti gave her a mandate at a service point; she chooses him in the mandate
    // service, sees his records, not his disclosure log.
    let hanna = Browser::new(&s);
    hanna.login("Hanna").await;
    let r = hanna.choose_adult(Some("Matti")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let front = hanna.get("/").await;
    assert!(
        front.body.contains("Matti Järvinen") && front.body.contains("valtuutettuna"),
        "{}",
        front.body
    );
    let v = hanna.get("/visits").await;
    assert!(shows(&v, "Keuhkokuume"), "{}", v.body);
    assert_eq!(
        hanna.get("/disclosures").await.status,
        StatusCode::FORBIDDEN
    );

    // Matti revokes it (online); within the re-check interval (1 s here) Hanna's access ends.
    let matti = Browser::new(&s);
    matti.login("Matti").await;
    let manage = matti.get("/test-mandates/manage").await;
    let id = {
        let marker = "name=\"op\" value=\"revoke\"><input type=\"hidden\" name=\"id\" value=\"";
        let i = manage.body.find(marker).expect("a revocable mandate");
        let rest = &manage.body[i + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let r = matti
        .post(
            "/test-mandates/manage",
            &[("csrf", &manage.csrf()), ("op", "revoke"), ("id", &id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v = hanna.get("/visits").await;
    assert_eq!(v.status, StatusCode::FORBIDDEN, "{}", v.body);
    assert!(!shows(&v, "Keuhkokuume"));
    assert!(v.body.contains("valtuutta"), "{}", v.body);
    // Her own data still works.
    hanna.back_to_self().await;
    assert_eq!(hanna.get("/visits").await.status, StatusCode::OK);

    // Antti's mandate from Matti has expired: the mandate service offers nobody.
    let antti = Browser::new(&s);
    antti.login("Antti").await;
    let csrf = antti.csrf().await;
    let start = antti.post("/act-for/mandate", &[("csrf", &csrf)]).await;
    let selection = antti.get(&start.location).await;
    assert!(!selection.body.contains(&s.people["Matti"]));
    let r = antti.choose_adult(None).await;
    assert_eq!(r.location, "/act-for?notice=mandate-cancelled");

    // A forged callback (a state not bound to this session) is refused.
    let r = antti
        .get("/act-for/mandate/callback?code=x&state=abc.0123")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The switch without a CSRF token, and an unknown person: refused, nothing switched.
    let r = antti
        .post(
            "/act-for",
            &[
                ("csrf", "wrong"),
                ("via", "register"),
                ("person", &s.people["Eetu"]),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = antti.switch_to("Eetu").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

/// R-OPS-2: with the mandate service down, acting for an adult is refused with a page that names
/// it, and acting for one's children (from the population register) and one's own data keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mandate_service_down_stops_only_acting_for_adults() {
    // Nothing listens on port 9 of loopback (discard): every call fails at once.
    let s = start(
        "down",
        "[mandates]\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"kanta001\"\napi_key = \"k\"\noauth_password = \"p\"\nrest_api_key = \"r\"\ntimeout_seconds = 2\n",
    );
    let hanna = Browser::new(&s);
    hanna.login("Hanna").await;
    let csrf = hanna.csrf().await;
    let r = hanna.post("/act-for/mandate", &[("csrf", &csrf)]).await;
    assert_eq!(r.location, "/act-for?notice=down");
    let page = hanna.get(&r.location).await;
    assert!(page
        .body
        .contains("Suomi.fi-valtuudet ei ole juuri nyt käytettävissä"));
    // A switch to an adult by mandate is refused with the same message (503).
    let r = hanna
        .post(
            "/act-for",
            &[
                ("csrf", &csrf),
                ("via", "mandate"),
                ("person", &s.people["Matti"]),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("Suomi.fi-valtuudet"));
    assert_eq!(hanna.get("/visits").await.status, StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_str(&hanna.get("/readyz").await.body).unwrap();
    assert_eq!(ready["subsystems"]["mandates"], "down", "{ready}");
    // Aino still acts for her children.
    let aino = Browser::new(&s);
    aino.login("Aino").await;
    assert_eq!(aino.switch_to("Eetu").await.status, StatusCode::SEE_OTHER);
    assert_eq!(aino.get("/visits").await.status, StatusCode::OK);
}

/// A demo provider's view of a patient's visits: the Encounter ids its search returns.
async fn provider_sees(s: &Server, client: &str, hetu: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/oauth/token", s.base))
        .basic_auth(
            client,
            Some(format!(
                "demo-secret-{}",
                client.trim_start_matches("demo-")
            )),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let get = |path: String| {
        http.get(format!("{}{path}", s.base))
            .bearer_auth(&token)
            .header("x-kanta-professional", "urn:oid:1.2.246.537.26|555")
            .header("x-kanta-purpose-of-use", "TREAT")
            .send()
    };
    let p: serde_json::Value = get(format!(
        "/fhir/Patient?identifier=urn:oid:1.2.246.21|{hetu}"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let pid = p["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e: serde_json::Value = get(format!("/fhir/Encounter?patient=Patient/{pid}&_count=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = e["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A change on the data-use page, with the page's CSRF token.
async fn change(b: &Browser<'_>, form: &[(&str, &str)]) -> Page {
    let csrf = b.get("/data-use").await.csrf();
    let mut f: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
    f.extend_from_slice(form);
    b.post("/data-use", &f).await
}

/// The preview's rows for `org`: (visit id, readable).
async fn preview(b: &Browser<'_>, org: &str) -> Vec<(String, bool)> {
    let page = b.get(&format!("/data-use/preview?org={org}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body
        .split("data-visit=\"")
        .skip(1)
        .map(|rest| {
            let id = rest[..rest.find('"').unwrap()].to_string();
            (
                id,
                rest.contains("data-readable=\"true\"")
                    && rest.find("data-readable=\"true\"") < rest.find("</tr>"),
            )
        })
        .collect()
}

/// Issue 12's "done means" on the real demo: Aino receives the notice, gives the health-care
/// consent, forbids HUS's data and lifts it, revokes the consent — and after each change the
/// preview says what Terveystalo (a demo provider) could read, and Terveystalo's own FHIR search
/// returns exactly that; her disclosure log names the reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_manages_data_use_and_the_demo_providers_obey() {
    let s = start("data-use", "");
    let aino = s.people["Aino"].clone();
    let tt = "demo-terveystalo";
    // Before anything: Terveystalo sees its own visit only.
    let own = provider_sees(&s, tt, &aino).await;
    assert_eq!(own.len(), 1, "{own:?}");
    let hus_own = provider_sees(&s, "demo-hus", &aino).await;
    assert!(hus_own.len() >= 2, "{hus_own:?}");
    let b = Browser::new(&s);
    b.login("Aino").await;
    let page = b.get("/data-use").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The preview and the API agree: every visit the preview says Terveystalo can read, its search
    // returns; every one it says it cannot, the search does not.
    let agree = |rows: Vec<(String, bool)>, api: Vec<String>| {
        for (id, readable) in &rows {
            assert_eq!(
                api.contains(id),
                *readable,
                "visit {id}: preview {readable}, API {api:?}"
            );
        }
        rows.iter().filter(|r| r.1).count()
    };
    assert_eq!(
        agree(
            preview(&b, "org-terveystalo").await,
            provider_sees(&s, tt, &aino).await
        ),
        1
    );
    // The health-care consent: Terveystalo reads HUS's visits too.
    let r = change(&b, &[("op", "give-consent"), ("domain", "health")]).await;
    assert_eq!(r.location, "/data-use?done=consent-given", "{}", r.body);
    let now_sees = provider_sees(&s, tt, &aino).await;
    assert!(hus_own.iter().all(|h| now_sees.contains(h)), "{now_sees:?}");
    let shown = agree(preview(&b, "org-terveystalo").await, now_sees.clone());
    assert!(shown >= 3, "{shown}");
    // A prohibition of all of HUS's data: Terveystalo no longer; HUS still sees its own.
    let r = change(&b, &[("op", "prohibit"), ("provider", "org-hus")]).await;
    assert_eq!(r.location, "/data-use?done=prohibition-set", "{}", r.body);
    let after = provider_sees(&s, tt, &aino).await;
    assert!(hus_own.iter().all(|h| !after.contains(h)), "{after:?}");
    let hus_now = provider_sees(&s, "demo-hus", &aino).await;
    assert!(hus_own.iter().all(|h| hus_now.contains(h)), "{hus_now:?}");
    agree(preview(&b, "org-terveystalo").await, after);
    // Lift it (the page's own lift form), then revoke the consent.
    let page = b.get("/data-use").await;
    let lift_id = page
        .body
        .split("value=\"lift-prohibition\"><input type=\"hidden\" name=\"id\" value=\"")
        .nth(1)
        .map(|r| r[..r.find('"').unwrap()].to_string())
        .expect("a lift form");
    let r = change(&b, &[("op", "lift-prohibition"), ("id", &lift_id)]).await;
    assert_eq!(
        r.location, "/data-use?done=prohibition-lifted",
        "{}",
        r.body
    );
    assert_eq!(provider_sees(&s, tt, &aino).await, now_sees);
    let page = b.get("/data-use").await;
    let consent_id = page
        .body
        .split("value=\"revoke-consent\"><input type=\"hidden\" name=\"id\" value=\"")
        .nth(1)
        .map(|r| r[..r.find('"').unwrap()].to_string())
        .expect("a revoke form");
    let r = change(&b, &[("op", "revoke-consent"), ("id", &consent_id)]).await;
    assert_eq!(r.location, "/data-use?done=consent-revoked", "{}", r.body);
    assert_eq!(provider_sees(&s, tt, &aino).await, own);
    // The versions are kept: the history lists the revoked consent and the lifted prohibition.
    let page = b.get("/data-use").await;
    assert!(page.body.matches("(peruttu)").count() >= 2, "{}", page.body);
    // The wills: saved, saved again (a new version), revoked.
    for text in ["Ei elvytystä.", "Ei elvytystä eikä tehohoitoa."] {
        let r = change(
            &b,
            &[
                ("op", "living"),
                ("treatment", text),
                ("representative", "Mikko Virtanen"),
            ],
        )
        .await;
        assert_eq!(r.location, "/data-use?done=living-saved", "{}", r.body);
    }
    let r = change(&b, &[("op", "organ"), ("willing", "yes"), ("text", "")]).await;
    assert_eq!(r.location, "/data-use?done=organ-saved", "{}", r.body);
    let page = b.get("/data-use").await;
    assert!(
        page.body.contains("Ei elvytystä eikä tehohoitoa.")
            && !page.body.contains(">Ei elvytystä.<"),
        "{}",
        page.body
    );
    let will_id = page
        .body
        .split("value=\"revoke-living\"><input type=\"hidden\" name=\"id\" value=\"")
        .nth(1)
        .map(|r| r[..r.find('"').unwrap()].to_string())
        .expect("a revoke form for the will");
    let r = change(&b, &[("op", "revoke-living"), ("id", &will_id)]).await;
    assert_eq!(r.location, "/data-use?done=living-revoked", "{}", r.body);
    // The disclosure log names Terveystalo's reads, for care.
    let log = b.get("/disclosures").await;
    assert!(
        log.body.contains("Terveystalo") && log.body.contains("Hoito"),
        "{}",
        log.body
    );
    // An entry she does not recognise, reported: the page names the data protection officer of
    // the organisation the entry names (looked up from her own log, not from the link).
    let seq = log
        .body
        .split("name=\"seq\" value=\"")
        .nth(1)
        .map(|r| r[..r.find('"').unwrap()].to_string())
        .expect("a report form");
    let r = b
        .post("/disclosures/flag", &[("csrf", &log.csrf()), ("seq", &seq)])
        .await;
    assert_eq!(
        r.location,
        format!("/disclosures?flagged={seq}"),
        "{}",
        r.body
    );
    let after = b.get(&r.location).await;
    assert!(after.body.contains("tietosuojavastaava"), "{}", after.body);
    let r = b
        .post(
            "/disclosures/flag",
            &[("csrf", &log.csrf()), ("seq", "999999999")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Issue 29: a choice recorded at a care unit, at the patient's request, is the care unit's act:
/// the server names the organisation and the professional from the request (never from the body),
/// MyKanta says so on the data-use page, and the front page's "what is new" lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choice_recorded_in_care_is_shown_with_its_recorder() {
    let s = start("changed-in-care", "");
    let antti = s.people["Antti"].clone();
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/oauth/token", s.base))
        .basic_auth("demo-terveystalo", Some("demo-secret-terveystalo"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let p: serde_json::Value = http
        .get(format!(
            "{}/fhir/Patient?identifier=urn:oid:1.2.246.21|{antti}",
            s.base
        ))
        .bearer_auth(&token)
        .header("x-kanta-professional", "urn:oid:1.2.246.537.26|777")
        .header("x-kanta-purpose-of-use", "TREAT")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = p["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The body claims the patient recorded it himself in MyKanta: refused.
    let prohibition = |recorded_as: Option<&str>| {
        let mut c = serde_json::json!({
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "urn:kanta:cs:consent-kind", "code": "prescription-prohibition"}]}],
            "patient": {"reference": format!("Patient/{pid}")},
            "dateTime": "2026-01-01T10:00:00Z",
            "performer": [{"identifier": {"system": "urn:oid:1.2.246.21", "value": antti}, "display": "Antti Rantanen"}],
        });
        if let Some(r) = recorded_as {
            c["extension"] =
                serde_json::json!([{"url": "urn:kanta:ext:recorded-as", "valueCode": r}]);
        }
        c
    };
    let post = |body: serde_json::Value| {
        http.post(format!("{}/fhir/Consent", s.base))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .header("x-kanta-professional", "urn:oid:1.2.246.537.26|777")
            .header("x-kanta-purpose-of-use", "TREAT")
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        post(prohibition(Some("self"))).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(prohibition(None)).await.unwrap().status(),
        StatusCode::CREATED
    );
    let b = Browser::new(&s);
    b.login("Antti").await;
    let front = b.get("/").await;
    assert_eq!(front.status, StatusCode::OK, "{}", front.body);
    assert!(
        front.body.contains("Hoitoyksikössä kirjatut valintasi")
            && front.body.contains("urn:oid:1.2.246.537.26|777"),
        "{}",
        front.body
    );
    let page = b.get("/data-use").await;
    assert!(
        page.body
            .contains("ammattihenkilö urn:oid:1.2.246.537.26|777")
            && page.body.contains("Terveystalo"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("kirjannut Antti Rantanen OmaKannassa"));
}

/// Issue 30: `/metrics` asks for the configured bearer token (without one, only loopback peers
/// read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_ask_for_the_configured_token() {
    let s = start(
        "metrics",
        "metrics_token = \"a-long-random-metrics-token-0123456789\"\n",
    );
    let http = reqwest::Client::new();
    let get = |token: Option<&str>| {
        let mut r = http.get(format!("{}/metrics", s.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(Some("wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = get(Some("a-long-random-metrics-token-0123456789"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("kanta_"));
}
