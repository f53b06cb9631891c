// A real OpenID provider for the tests: panva's certified `oidc-provider`, on loopback, with
// its own (development) login and consent pages, one confidential client (the console) and a
// few people with groups. Started by the Rust tests (server/tests/single_sign_on.rs) and the
// end-to-end suite; it prints one JSON line, `{"issuer": …}`, once it listens.
//
// Environment: OIDC_REDIRECT_URI (the console's callback), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET.
//
// The people (the login page takes their id; its password field is not checked):
//   ada@studio.test  groups [cr-admins]      pat@studio.test  groups [cr-producers]
//   vic@studio.test  no group                una@studio.test  email not verified
//   eve@elsewhere.test (another domain)
//
// For the tests that need a provider that misbehaves or moves on, a control API on the same
// port (loopback only, like the rest):
//   POST /test/groups  {"sub": …, "groups": […]}  a person's groups from now on
//   POST /test/tamper  {"aud": "…"} | {"expired": true}  the next ID token is re-signed with
//                      that audience, or with an exp an hour ago (the provider's own key)
//   POST /test/rotate  a new signing key (a new kid) for every later ID token; the JWKS
//                      serves both
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const redirectUri = process.env.OIDC_REDIRECT_URI;
if (!redirectUri) {
  console.error('OIDC_REDIRECT_URI is required');
  process.exit(2);
}
const clientId = process.env.OIDC_CLIENT_ID || 'control-room';
const clientSecret = process.env.OIDC_CLIENT_SECRET || 'a-client-secret-for-tests';

const people = {
  'ada@studio.test': { name: 'Ada Admin', email_verified: true, groups: ['cr-admins'] },
  'pat@studio.test': { name: 'Pat Producer', email_verified: true, groups: ['cr-producers'] },
  'vic@studio.test': { name: 'Vic Viewer', email_verified: true, groups: [] },
  'una@studio.test': { name: 'Una Unverified', email_verified: false, groups: [] },
  'eve@elsewhere.test': { name: 'Eve Elsewhere', email_verified: true, groups: ['cr-admins'] },
};

async function signingKey() {
  const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const kid = crypto.randomBytes(8).toString('hex');
  const privateJwk = { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwk = { ...(await jose.exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateKey, privateJwk, publicJwk, kid };
}

const first = await signingKey();
let rotated = null; // a later key, once /test/rotate is called
let tamper = null; // what to do to the next ID token

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
  }],
  jwks: { keys: [first.privateJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  conformIdTokenClaims: false, // the scopes' claims in the ID token itself, as Entra and Keycloak do
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  ttl: { IdToken: 3600, AccessToken: 600, AuthorizationCode: 60, Interaction: 3600, Session: 3600, Grant: 3600 },
  async findAccount(ctx, sub) {
    const p = people[sub];
    if (!p) return undefined;
    return { accountId: sub, async claims() { return { sub, email: sub, ...people[sub] }; } };
  },
};

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

async function resign(idToken) {
  const claims = jose.decodeJwt(idToken);
  const key = rotated || first;
  const now = Math.floor(Date.now() / 1000);
  if (tamper?.aud) claims.aud = tamper.aud;
  if (tamper?.expired) { claims.iat = now - 7200; claims.exp = now - 3600; }
  tamper = null;
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.body?.id_token && (tamper || rotated)) {
      ctx.body = { ...ctx.body, id_token: await resign(ctx.body.id_token) };
    }
    if (ctx.path === '/jwks' && rotated && ctx.body?.keys) {
      ctx.body = { keys: [...ctx.body.keys, rotated.publicJwk] };
    }
  });
  const oidc = provider.callback();
  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/test/')) return oidc(req, res);
    try {
      const b = await body(req);
      if (req.url === '/test/groups' && people[b.sub]) people[b.sub].groups = b.groups;
      else if (req.url === '/test/tamper') tamper = b;
      else if (req.url === '/test/rotate') rotated = await signingKey();
      else { res.writeHead(404).end('no such control'); return; }
      res.writeHead(204).end();
    } catch (e) {
      res.writeHead(400).end(String(e));
    }
  });
  console.log(JSON.stringify({ issuer }));
});
