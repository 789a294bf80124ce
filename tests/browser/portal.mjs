// The portal in a real browser (issue 3; R-AUTH-3, R-AUTH-5; WCAG 2.1 AA): Debian's chromium driven
// by playwright-core, every page checked by axe-core for WCAG 2.1 A/AA violations.
//
// Usage: node portal.mjs BASE_URL SCREENSHOT_DIR
// BASE_URL is a `kanta serve --demo` whose session warning shows a few seconds after a page loads
// (scripts/test starts one with idle_seconds = 40, warn_seconds = 34). In each language: the
// public front page, log in through the built-in test identification service, confirm, the front
// page (screenshot), the disclosure log, the idle warning dialog and "continue", switch language,
// log out.
// Prints one line per check and a closing `test result:` line like cargo's; exits 1 on failure.
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';
import fs from 'node:fs';
import path from 'node:path';

const [base, shots = 'screenshots'] = process.argv.slice(2);
if (!base) { console.error('usage: node portal.mjs BASE_URL [SCREENSHOT_DIR]'); process.exit(2); }
fs.mkdirSync(shots, { recursive: true });

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`test browser::${name} ... ok`);
  } catch (e) {
    failed += 1;
    console.log(`test browser::${name} ... FAILED\n    ${String(e && e.stack || e).split('\n').slice(0, 4).join('\n    ')}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }

async function axe(page, what) {
  const r = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  const v = r.violations.map((x) => `${x.id} (${x.impact}): ${x.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  expect(v.length === 0, `${what}: axe found ${v.length} WCAG violation(s):\n      ${v.join('\n      ')}`);
}

const WORDS = {
  fi: { visits: 'Käynnit ja hoitojaksot', disclosures: 'Tietojeni luovutukset ja käyttö', back: 'Etusivulle', login: 'Kirjaudu sisään', hello: 'Hei,', confirm: 'Jatka', logout: 'Kirjaudu ulos', cont: 'Jatka istuntoa', out: 'Olet kirjautunut ulos' },
  sv: { visits: 'Besök och vårdperioder', disclosures: 'Utlämnande och användning av mina uppgifter', back: 'Till startsidan', login: 'Logga in', hello: 'Hej,', confirm: 'Fortsätt', logout: 'Logga ut', cont: 'Fortsätt sessionen', out: 'Du har loggat ut' },
  en: { visits: 'Visits and care periods', disclosures: 'Disclosure and use of my data', back: 'To the front page', login: 'Log in', hello: 'Hello,', confirm: 'Continue', logout: 'Log out', cont: 'Continue session', out: 'You have logged out' },
};
const NEXT = { fi: 'sv', sv: 'en', en: 'fi' };
const NATIVE = { fi: 'Suomeksi', sv: 'På svenska', en: 'In English' };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  for (const lang of ['fi', 'sv', 'en']) {
    const w = WORDS[lang];
    const context = await browser.newContext({ locale: `${lang}-FI` });
    const page = await context.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    // Script in record text must never run: any alert/confirm/prompt is a failure.
    page.on('dialog', async (d) => { errors.push(`a ${d.type()} dialog opened: ${d.message()}`); await d.dismiss(); });

    await check(`${lang}::public_front_page`, async () => {
      await page.goto(base + '/');
      expect(await page.getAttribute('html', 'lang') === lang, 'html lang');
      await axe(page, 'public front page');
      await page.screenshot({ path: path.join(shots, `public-${lang}.png`), fullPage: true });
      // Keyboard: the first Tab reaches the skip link, and it shows.
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement.classList.contains('skip')), 'skip link first in tab order');
    });

    await check(`${lang}::login_through_test_identification`, async () => {
      await page.getByRole('link', { name: w.login }).click();
      await page.waitForURL(/\/test-idp\/authorize/);
      await axe(page, 'test identification page');
      // The first demo person (an adult), with online banking codes.
      await page.locator('ul.people button').first().click();
      await page.waitForURL(/\/confirm$/);
      await axe(page, 'confirm page');
      const facts = await page.locator('dl.facts').innerText();
      expect(/\d{6}[-+A-FU-Y]\d{3}[0-9A-Y]/.test(facts), `the HETU is shown: ${facts}`);
      await page.getByRole('button', { name: w.confirm, exact: true }).click();
      await page.waitForURL((u) => u.pathname === '/' || u.pathname === '/notice');
      if (new URL(page.url()).pathname === '/notice') {
        // R-INFO-1: the information notice comes first; the service waits for the tick.
        await axe(page, 'information notice');
        await page.screenshot({ path: path.join(shots, `notice-${lang}.png`), fullPage: true });
        await page.goto(base + '/visits');
        expect(new URL(page.url()).pathname === '/notice', 'the records wait for the notice');
        await page.locator('#received').check();
        await page.locator('form[action="/notice"] button[type=submit]').click();
        await page.waitForURL(/\/data-use\?done=notice$/);
        await axe(page, 'data use after the notice');
        await page.goto(base + '/');
      }
      const h1 = await page.locator('h1').innerText();
      expect(h1.startsWith(w.hello), `front page greets: ${h1}`);
      await axe(page, 'front page');
      await page.screenshot({ path: path.join(shots, `front-${lang}.png`), fullPage: true });
    });

    await check(`${lang}::visits`, async () => {
      await page.getByRole('link', { name: w.visits }).click();
      await page.waitForURL(/\/visits$/);
      // The first demo person has visits with records; the display rules let some through.
      expect(await page.locator('section.visit').count() > 0, 'visits listed');
      // The demo's markup in a record (a script, an onerror handler) reached the page as text or
      // was stripped; the dialog listener above fails the run if any of it ran.
      expect((await page.content()).includes('Ravinto-ohjaus annettu'), 'the record with markup is shown');
      expect(!(await page.content()).includes('<script>alert'), 'no script element from a record');
      await axe(page, 'visits page');
      await page.screenshot({ path: path.join(shots, `visits-${lang}.png`), fullPage: true });
      await page.getByRole('link', { name: w.back }).click();
      await page.waitForURL(base + '/');
    });

    if (lang !== 'en') {
      await check(`${lang}::data_use_forms`, async () => {
        // R-VIEW-6, R-ACT-4/5: give a consent, set a prohibition of one visit (allowed in an
        // emergency), see it in the preview (R-X-1), lift it, revoke the consent.
        await page.goto(base + '/data-use');
        await axe(page, 'data use page');
        const give = page.locator('form:has(input[name=op][value=give-consent]):has(input[value=health]) button');
        if (await give.count() === 1) {
          await give.click();
          await page.waitForURL(/done=consent-given/);
        }
        expect(await page.locator('form:has(input[name=op][value=revoke-consent]) button').count() >= 1, 'a consent to revoke');
        const visitForm = page.locator('form:has(select[name=visit])');
        await visitForm.locator('input[name=emergency]').check();
        await visitForm.locator('button[type=submit]').click();
        await page.waitForURL(/done=prohibition-set/);
        expect(await page.locator('p.notice[role=status]').count() === 1, 'the effect is explained');
        await axe(page, 'data use with a prohibition');
        await page.screenshot({ path: path.join(shots, `data-use-${lang}.png`), fullPage: true });
        await page.goto(base + '/data-use/preview');
        await axe(page, 'preview page');
        await page.locator('select#org').selectOption({ index: 0 });
        await page.locator('form[action="/data-use/preview"] button').click();
        await page.waitForURL(/preview\?org=/);
        expect(await page.locator('table.list tbody tr').count() > 0, 'the preview lists visits');
        await axe(page, 'preview with a provider');
        await page.screenshot({ path: path.join(shots, `preview-${lang}.png`), fullPage: true });
        await page.goto(base + '/data-use');
        await page.locator('form:has(input[name=op][value=lift-prohibition]) button').first().click();
        await page.waitForURL(/done=prohibition-lifted/);
        await page.goto(base + '/');
      });

      await check(`${lang}::every_record_section`, async () => {
        // Every section the records navigation lists (R-VIEW-2), each checked by axe.
        const hrefs = await page.locator('nav ul.sections a[href^="/records/"]').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
        expect(hrefs.length === 12, `twelve record sections linked from the front page: ${hrefs}`);
        let listed = 0;
        for (const href of hrefs) {
          await page.goto(base + href);
          expect(await page.locator('nav.records-nav a[aria-current="page"]').count() === 1, `${href}: current section marked`);
          listed += await page.locator('ul.records li').count();
          await axe(page, `section ${href}`);
          await page.screenshot({ path: path.join(shots, `section-${href.split('/').pop()}-${lang}.png`), fullPage: true });
        }
        expect(listed > 5, `the demo person has records in the sections (${listed})`);
      });

      await check(`${lang}::section_filter_and_detail`, async () => {
        await page.goto(base + '/records/lab');
        const before = await page.locator('ul.records li').count();
        expect(before > 0, 'lab results listed');
        // A range in the future: nothing; the form keeps what was typed; "clear" brings all back.
        await page.locator('#filter-from').fill('2099-01-01');
        await page.locator('form.filters button[type=submit]').click();
        await page.waitForURL(/from=2099-01-01/);
        expect(await page.locator('ul.records li').count() === 0, 'the filter narrows');
        expect(await page.locator('#filter-from').inputValue() === '2099-01-01', 'the filter is kept');
        await axe(page, 'filtered section');
        await page.locator('form.filters a').click();
        await page.waitForURL(/\/records\/lab$/);
        expect(await page.locator('ul.records li').count() === before, 'clearing restores');
        // The detail view names the recording unit's data protection officer (R-ACT-12).
        await page.locator('ul.records li a').first().click();
        await page.waitForURL(/\/records\/lab\/Observation\//);
        expect(await page.locator('section.dpo a[href^="mailto:"]').count() === 1, 'DPO contact shown');
        await axe(page, 'record detail');
        await page.screenshot({ path: path.join(shots, `record-lab-${lang}.png`), fullPage: true });
        await page.goto(base + '/');
      });
    }

    await check(`${lang}::disclosure_log`, async () => {
      await page.getByRole('link', { name: w.disclosures }).click();
      await page.waitForURL(/\/disclosures$/);
      // The demo's providers stored this person's records: their use is listed.
      expect(await page.locator('table.list tbody tr').count() > 0, 'organisations listed');
      await axe(page, 'disclosure log');
      await page.screenshot({ path: path.join(shots, `disclosures-${lang}.png`), fullPage: true });
      await page.getByRole('link', { name: w.back }).click();
      await page.waitForURL(base + '/');
    });

    await check(`${lang}::idle_warning_and_continue`, async () => {
      // The warning opens before the idle timeout; "continue" keeps the session.
      const dialog = page.locator('dialog#timeout-warning');
      await dialog.waitFor({ state: 'visible', timeout: 40000 });
      await axe(page, 'session warning');
      await page.screenshot({ path: path.join(shots, `warning-${lang}.png`) });
      await dialog.getByRole('button', { name: w.cont }).click();
      await page.waitForURL(base + '/');
      expect((await page.locator('h1').innerText()).startsWith(w.hello), 'still logged in after continue');
    });

    await check(`${lang}::switch_language_is_remembered`, async () => {
      const next = NEXT[lang];
      await page.getByRole('button', { name: NATIVE[next] }).click();
      await page.waitForURL(base + '/');
      expect(await page.getAttribute('html', 'lang') === next, 'switched');
      await page.reload();
      expect(await page.getAttribute('html', 'lang') === next, 'remembered');
      await page.getByRole('button', { name: NATIVE[lang] }).click();
      await page.waitForURL(base + '/');
      expect(await page.getAttribute('html', 'lang') === lang, 'switched back');
    });

    await check(`${lang}::logout`, async () => {
      await page.getByRole('button', { name: w.logout }).click();
      await page.waitForURL(/\/logged-out$/);
      expect((await page.locator('h1').innerText()).includes(w.out), 'logged-out page');
      await axe(page, 'logged-out page');
      await page.goto(base + '/');
      expect(await page.getByRole('link', { name: w.login }).isVisible(), 'back to the public page');
      expect(errors.length === 0, `no console errors: ${errors.join('; ')}`);
    });
    await context.close();
  }

  await check('refusal_page_is_accessible', async () => {
    const context = await browser.newContext({ locale: 'fi-FI' });
    const page = await context.newPage();
    await page.goto(base + '/login');
    await page.getByLabel(/testihenkilötunnus/i).fill('010594Y9022');
    await page.getByRole('button', { name: 'Tunnistaudu' }).click();
    await page.waitForURL(/\/auth\/callback/);
    expect((await page.locator('main').innerText()).includes('ei ole kelvollinen'), 'invalid HETU refused');
    await axe(page, 'refusal page');
    await context.close();
  });
  // R-AUTH-5: "continue" goes on only while the identification service's own session lives.
  await check('provider_session_ended_ends_ours', async () => {
    const context = await browser.newContext({ locale: 'fi-FI' });
    const page = await context.newPage();
    await page.goto(base + '/login');
    await page.waitForURL(/\/test-idp\/authorize/);
    await page.locator('ul.people button').first().click();
    await page.waitForURL(/\/confirm$/);
    await page.getByRole('button', { name: 'Jatka', exact: true }).click();
    await page.waitForURL((u) => u.pathname === '/' || u.pathname === '/notice');
    await page.goto(base + '/test-idp/session');
    await axe(page, 'test identification session page');
    await page.locator('form[action="/test-idp/session/end"] button').click();
    await page.waitForURL(/\/test-idp\/session$/);
    expect((await page.locator('main').innerText()).includes('Sinulla ei ole istuntoa'), 'the provider session ended');
    await page.goto(base + '/');
    await page.locator('form[action="/session/continue"] button:visible').first().click();
    await page.waitForURL(/\/auth\/callback/);
    expect((await page.locator('main').innerText()).includes('Istuntosi tunnistuspalvelussa on päättynyt'), 'our session ended, and says why');
    await axe(page, 'provider session ended');
    await page.goto(base + '/');
    expect(await page.getByRole('link', { name: 'Kirjaudu sisään' }).isVisible(), 'logged out');
    // The front-channel logout page (framed by a provider) is a page of its own too.
    await page.goto(base + '/auth/frontchannel-logout?iss=x&sid=y');
    expect((await page.locator('h1').innerText()).length > 0, 'the front-channel page has a heading');
    await axe(page, 'front-channel logout page');
    await context.close();
  });
  // Acting for someone else (R-MINOR, R-PROXY): the switch, whose data is shown and as whom, the
  // disclosure log not offered, one click back; a proxy through the mandate service's selection page.
  const ACT = {
    fi: { act: 'Asioi toisen puolesta', sw: 'Asioi henkilön Eetu Virtanen puolesta', banner: 'Katselet henkilön Eetu Virtanen tietoja', self: 'Palaa omiin tietoihin', choose: 'Valitse henkilö valtuuspalvelussa', confirm: 'Jatka', matti: 'Katselet henkilön Matti Järvinen tietoja' },
    sv: { act: 'Sköt ärenden för någon annan', sw: 'Sköt ärenden för Eetu Virtanen', banner: 'Du ser uppgifterna för Eetu Virtanen', self: 'Tillbaka till mina egna uppgifter', choose: 'Välj person i fullmaktstjänsten', confirm: 'Fortsätt', matti: 'Du ser uppgifterna för Matti Järvinen' },
  };
  for (const lang of ['fi', 'sv']) {
    const a = ACT[lang];
    const login = async (page, name) => {
      await page.goto(base + '/login');
      await page.waitForURL(/\/test-idp\/authorize/);
      await page.getByRole('button', { name }).click();
      await page.waitForURL(/\/confirm$/);
      await page.getByRole('button', { name: a.confirm, exact: true }).click();
      await page.waitForURL(base + '/');
    };
    await check(`${lang}::act_for_a_child`, async () => {
      const context = await browser.newContext({ locale: `${lang}-FI` });
      const page = await context.newPage();
      await login(page, 'Aino Virtanen');
      await page.getByRole('link', { name: a.act }).first().click();
      await page.waitForURL(/\/act-for$/);
      await axe(page, 'act-for page');
      await page.screenshot({ path: path.join(shots, `act-for-${lang}.png`), fullPage: true });
      await page.getByRole('button', { name: a.sw }).click();
      await page.waitForURL(base + '/');
      const banner = await page.locator('section.acting').innerText();
      expect(banner.includes(a.banner), `the banner names the child: ${banner}`);
      expect(await page.locator('a[href="/disclosures"]').count() === 0, 'the disclosure log is not offered');
      await axe(page, 'front page acting for a child');
      await page.screenshot({ path: path.join(shots, `acting-front-${lang}.png`), fullPage: true });
      await page.goto(base + '/visits');
      expect(await page.locator('section.acting').count() === 1, 'the banner on the visits page');
      await axe(page, 'visits acting for a child');
      await page.screenshot({ path: path.join(shots, `acting-visits-${lang}.png`), fullPage: true });
      // The child's prescriptions, and a renewal the guardian may ask for (R-ACT-1).
      await page.goto(base + '/records/prescriptions');
      expect(await page.locator('section.prescription').count() >= 2, 'the child\'s prescriptions');
      await axe(page, 'prescriptions acting for a child');
      const renewChild = page.locator('form:has(input[name=kind][value=renewal]) button');
      // The first run asks for it; the second finds it asked (one open request at a time).
      if (lang === 'fi') expect(await renewChild.count() >= 1, 'a guardian may ask for a renewal');
      if (await renewChild.count() > 0) {
        await renewChild.first().click();
        await page.waitForURL(/done=renewal/);
        expect(await page.locator('section.acting').count() === 1, 'the banner after the request');
      }
      const refused = await page.goto(base + '/disclosures');
      expect(refused.status() === 403, `the disclosure log asked for directly: ${refused.status()}`);
      await axe(page, 'disclosure log refused');
      await page.getByRole('button', { name: a.self }).click();
      await page.waitForURL(base + '/');
      expect(await page.locator('section.acting').count() === 0, 'back to own data');
      await context.close();
    });
    await check(`${lang}::prescriptions_and_renewal`, async () => {
      // Issue 13: the prescriptions page (R-VIEW-1), a renewal request (R-ACT-1), the sheet.
      const context = await browser.newContext({ locale: `${lang}-FI` });
      const page = await context.newPage();
      await login(page, 'Aino Virtanen');
      await page.goto(base + '/records/prescriptions');
      expect(await page.locator('section.prescription').count() >= 2, 'her prescriptions are listed');
      expect(await page.locator('section.prescription table tbody tr').count() >= 1, 'a dispensation with its pharmacy and price');
      await axe(page, 'prescriptions page');
      await page.screenshot({ path: path.join(shots, `prescriptions-${lang}.png`), fullPage: true });
      const renew = page.locator('form:has(input[name=kind][value=renewal]) button');
      const before = await renew.count();
      expect(before >= 1, 'a renewal is offered');
      await renew.first().click();
      await page.waitForURL(/done=renewal/);
      expect(await page.locator('p.notice[role=status]').count() === 1, 'the request is confirmed');
      expect(await renew.count() === before - 1, 'one request at a time');
      await axe(page, 'prescriptions page after a renewal request');
      await page.locator('section.prescription a[href^="/records/prescriptions/"]').first().click();
      await page.waitForURL(/\/records\/prescriptions\/[0-9a-f-]+$/);
      await axe(page, 'prescription sheet');
      await page.screenshot({ path: path.join(shots, `prescription-sheet-${lang}.png`), fullPage: true });
      await context.close();
    });
    await check(`${lang}::act_for_an_adult_by_mandate`, async () => {
      const context = await browser.newContext({ locale: `${lang}-FI` });
      const page = await context.newPage();
      await login(page, 'Hanna Järvinen');
      await page.goto(base + '/act-for');
      await page.getByRole('button', { name: a.choose }).click();
      await page.waitForURL(/\/test-mandates\/oauth\/authorize/);
      await axe(page, 'mandate selection page');
      await page.screenshot({ path: path.join(shots, `mandate-select-${lang}.png`), fullPage: true });
      await page.getByRole('button', { name: 'Matti Järvinen' }).click();
      await page.waitForURL(base + '/');
      const banner = await page.locator('section.acting').innerText();
      expect(banner.includes(a.matti), `the banner names the principal: ${banner}`);
      await axe(page, 'front page acting by mandate');
      await page.screenshot({ path: path.join(shots, `acting-proxy-${lang}.png`), fullPage: true });
      await page.goto(base + '/test-mandates/manage');
      await axe(page, 'mandate management page');
      await context.close();
    });
  }
} finally {
  await browser.close();
}
console.log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed; 0 ignored`);
process.exit(failed ? 1 : 0);
