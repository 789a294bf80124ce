// A real, independent OpenID provider for Kanta's identification tests: panva's oidc-provider
// (OpenID Certified), configured like a national identification service: it releases the HETU in
// the claim urn:oid:1.2.246.21, a level of assurance in `acr`, a session id for back-channel logout.
//
// Usage: node idp.mjs   (env: RP_BASE = the portal's public URL; ID_TOKEN_TTL seconds; RP_JWKS =
// the portal's public JWK set, for the clients of the Finnish Trust Network profile; MINIMAL_ID_TOKEN
// = 1: the person's attributes only in the userinfo response)
//
// Clients: `kanta-portal` (client_secret_basic, plain requests and tokens) and, with RP_JWKS, the
// FTN profile's clients, each requiring private_key_jwt and signed request objects:
//   ftn            ID token and userinfo signed and encrypted (RSA-OAEP-256, A256GCM)
//   ftn-par        the same, and pushed authorization requests required
//   ftn-plain      ID token and userinfo not encrypted (the portal must refuse them)
//   ftn-other-key  encrypted to a key that is not the portal's
//   ftn-wrong-enc  encrypted with A128CBC-HS256 content encryption
//   ftn-second-key encrypted to the portal's second encryption key only (key rotation)
// POST /test-control/forget-sessions makes the provider see no session of its own (as after its
// session ended); POST /test-control/remember-sessions undoes that.
// Prints "LISTENING <port>" once it serves on 127.0.0.1. Logins need no browser: /interaction/<uid>
// logs in the account the test chose beforehand (POST /test-control/next-account?name=…) and grants
// the scopes asked for. POST /test-control/rogue-keys makes /jwks publish other keys under the real
// key ids, so that the tokens it signs look foreign-signed to the portal.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const RP = process.env.RP_BASE;
const SUBSTANTIAL = 'http://eidas.europa.eu/LoA/substantial';
const LOW = 'http://eidas.europa.eu/LoA/low';
const HETU = 'urn:oid:1.2.246.21';
const EIDAS = 'http://eidas.europa.eu/attributes/naturalperson/PersonIdentifier';

// Accounts by name: claims released, and the level of assurance of the login.
const ACCOUNTS = {
  ok: { acr: SUBSTANTIAL, claims: { [HETU]: '010594Y9021', given_name: 'Testi', family_name: 'Henkilö' } },
  weak: { acr: LOW, claims: { [HETU]: '010594Y9021' } },
  foreign: { acr: SUBSTANTIAL, claims: { [EIDAS]: 'SE/FI/199001011234', given_name: 'Sven', family_name: 'Svensson' } },
  nohetu: { acr: SUBSTANTIAL, claims: { given_name: 'Nomen', family_name: 'Nescio' } },
  invalid: { acr: SUBSTANTIAL, claims: { [HETU]: '010594Y9022', given_name: 'Väärä', family_name: 'Tunnus' } },
  unknown: { acr: SUBSTANTIAL, claims: { [HETU]: '010594Y9032' } },
  attributes: { acr: SUBSTANTIAL, claims: { [HETU]: '150390A904F', given_name: 'Attribuutti', family_name: 'Henkilö' } },
  deceased: { acr: SUBSTANTIAL, claims: { [HETU]: '010594Y9054', given_name: 'Kuollut', family_name: 'Henkilö' } },
};
let nextAccount = 'ok';
let rogueJwks = null;
let forgetSessions = false;
const RP_JWKS = process.env.RP_JWKS ? JSON.parse(process.env.RP_JWKS) : null;

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const issuer = `http://127.0.0.1:${port}`;
  const client = (id, extra) => ({
    client_id: id,
    client_secret: 'test-secret',
    redirect_uris: [`${RP}/auth/callback`],
    post_logout_redirect_uris: [`${RP}/logged-out`],
    backchannel_logout_uri: `${RP}/auth/backchannel-logout`,
    backchannel_logout_session_required: true,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...extra,
  });
  const ftnClients = [];
  if (RP_JWKS) {
    const sig = RP_JWKS.keys.filter((k) => k.use === 'sig');
    const enc = RP_JWKS.keys.filter((k) => k.use === 'enc');
    const { publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const foreignEnc = { ...publicKey.export({ format: 'jwk' }), kid: 'not-the-portals', use: 'enc', alg: 'RSA-OAEP-256' };
    const ftn = (id, extra) => {
      const c = client(id, {
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: RP_JWKS,
        require_signed_request_object: true,
        id_token_encrypted_response_alg: 'RSA-OAEP-256',
        id_token_encrypted_response_enc: 'A256GCM',
        userinfo_signed_response_alg: 'RS256',
        userinfo_encrypted_response_alg: 'RSA-OAEP-256',
        userinfo_encrypted_response_enc: 'A256GCM',
        ...extra,
      });
      delete c.client_secret;
      for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
      return c;
    };
    ftnClients.push(
      ftn('ftn'),
      ftn('ftn-par', { require_pushed_authorization_requests: true }),
      ftn('ftn-plain', {
        id_token_encrypted_response_alg: undefined, id_token_encrypted_response_enc: undefined,
        userinfo_encrypted_response_alg: undefined, userinfo_encrypted_response_enc: undefined,
      }),
      ftn('ftn-other-key', { jwks: { keys: [...sig, foreignEnc] } }),
      // Our published key says RSA-OAEP-256, so only the content encryption can differ.
      ftn('ftn-wrong-enc', { id_token_encrypted_response_enc: 'A128CBC-HS256' }),
      ftn('ftn-second-key', { jwks: { keys: [...sig, enc[enc.length - 1]] } }),
    );
  }
  const provider = new Provider(issuer, {
    clients: [client('kanta-portal'), ...ftnClients],
    claims: { openid: ['sub'], profile: ['given_name', 'family_name'], hetu: [HETU, EIDAS] },
    conformIdTokenClaims: process.env.MINIMAL_ID_TOKEN === '1',
    acrValues: [SUBSTANTIAL, 'http://eidas.europa.eu/LoA/high', LOW],
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      requestObjects: { enabled: true },
      encryption: { enabled: true },
      jwtUserinfo: { enabled: true },
      pushedAuthorizationRequests: { enabled: true },
    },
    pkce: { required: () => true },
    ttl: { IdToken: Number(process.env.ID_TOKEN_TTL || 3600) },
    // Its outgoing requests (back-channel logout) refuse loopback addresses against SSRF; here the
    // portal under test is on loopback, so they go out without that dispatcher.
    fetch: (url, options) => { delete options.dispatcher; return fetch(url, options); },
    interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
    async findAccount(ctx, id) {
      const a = ACCOUNTS[id];
      if (!a) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...a.claims }) };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('idp server_error', err));
  provider.on('backchannel.error', (ctx, err, client) => console.error('idp backchannel.error', client.clientId, err));
  provider.use(async (ctx, next) => {
    if (ctx.path === '/test-control/next-account' && ctx.method === 'POST') {
      nextAccount = new URL(ctx.href).searchParams.get('name');
      ctx.body = 'ok';
      return;
    }
    if (ctx.path === '/test-control/rogue-keys' && ctx.method === 'POST') {
      // Publish a key with the real key's id but other key material: tokens then look foreign-signed.
      const real = await (await fetch(`${issuer}/jwks`)).json();
      const { publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const jwk = publicKey.export({ format: 'jwk' });
      rogueJwks = { keys: real.keys.map((k) => ({ ...jwk, kid: k.kid, use: 'sig', alg: 'RS256' })) };
      ctx.body = 'ok';
      return;
    }
    if (ctx.path === '/test-control/forget-sessions' && ctx.method === 'POST') {
      forgetSessions = true;
      ctx.body = 'ok';
      return;
    }
    if (ctx.path === '/test-control/remember-sessions' && ctx.method === 'POST') {
      forgetSessions = false;
      ctx.body = 'ok';
      return;
    }
    if (forgetSessions && ctx.path.startsWith('/auth')) {
      // The browser's session cookies no longer name a session here.
      delete ctx.req.headers.cookie;
    }
    if (ctx.path === '/jwks' && rogueJwks) {
      ctx.body = rogueJwks;
      return;
    }
    const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (!m) return next();
    const d = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (d.prompt.name === 'login') {
      result = { login: { accountId: nextAccount, acr: ACCOUNTS[nextAccount].acr } };
    } else {
      const g = d.grantId ? await provider.Grant.find(d.grantId)
        : new provider.Grant({ accountId: d.session.accountId, clientId: d.params.client_id });
      g.addOIDCScope(d.params.scope);
      result = { consent: { grantId: await g.save() } };
    }
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  });
  server.on('request', provider.callback());
  console.log(`LISTENING ${port}`);
});
