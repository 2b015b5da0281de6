// A real OpenID provider for the console's sign-in tests: oidc-provider (a
// certified implementation) on 127.0.0.1, a free port, with one
// confidential client (the gateway), a plain login page (any listed
// account, no password: the tests are about the relying party), and
// consent granted for the first-party client. It prints its issuer as the
// first line of stdout.
//
// MODE makes it misbehave the way a broken or hostile provider would, by
// rewriting the ID token it just issued (re-signed with its own key, so
// only the named check can catch it):
//   wrong-audience  the token names another client as its audience
//   no-nonce        the token carries no nonce
//   replay          every token after the first is the first one again
//   foreign-key     the token is signed by a key that is not the provider's
//
// Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ACCOUNTS (JSON:
// {"alice": {"email": "...", "email_verified": true, "groups": ["..."]}}), MODE, CLAIMS_IN_ID_TOKEN=1
// (claims in the ID token rather than only at userinfo), ID_TOKEN_TTL (s).
import http from "node:http";
import { randomBytes } from "node:crypto";
import Provider from "oidc-provider";
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from "jose";

const env = process.env;
const accounts = JSON.parse(env.ACCOUNTS ?? "{}");
const mode = env.MODE ?? "";

const { privateKey } = await generateKeyPair("RS256", { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: "test-key", use: "sig", alg: "RS256" };
const foreign = (await generateKeyPair("RS256")).privateKey;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env.CLIENT_ID,
      client_secret: env.CLIENT_SECRET,
      redirect_uris: [env.REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  claims: { openid: ["sub"], email: ["email", "email_verified"], groups: ["groups"] },
  scopes: ["openid", "email", "groups"],
  conformIdTokenClaims: env.CLAIMS_IN_ID_TOKEN !== "1",
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { IdToken: Number(env.ID_TOKEN_TTL ?? 300), AccessToken: 300, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: account.email_verified ?? true, groups: account.groups ?? [] };
      },
    };
  },
  // First-party client: consent is implied, as an enterprise IdP configures it.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid email groups");
    grant.addOIDCClaims(["sub", "email", "email_verified", "groups"]);
    await grant.save();
    return grant;
  },
});

let firstIdToken = null;
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== "/token" || ctx.status !== 200 || !ctx.body?.id_token) return;
  const original = ctx.body.id_token;
  if (mode === "replay") {
    firstIdToken ??= original;
    ctx.body = { ...ctx.body, id_token: firstIdToken };
    return;
  }
  const payload = decodeJwt(original);
  const header = decodeProtectedHeader(original);
  let key = privateKey;
  if (mode === "wrong-audience") payload.aud = "another-application";
  else if (mode === "no-nonce") delete payload.nonce;
  else if (mode === "foreign-key") key = foreign;
  else return;
  const resigned = await new SignJWT(payload).setProtectedHeader({ alg: header.alg, kid: header.kid }).sign(key);
  ctx.body = { ...ctx.body, id_token: resigned };
});

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
}

async function formBody(req) {
  let text = "";
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

server.on("request", async (req, res) => {
  const match = req.url.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!match) return provider.callback()(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === "POST" && match[2]) {
      const login = (await formBody(req)).get("login") ?? "";
      if (!accounts[login]) {
        res.writeHead(400, { "content-type": "text/html" });
        return res.end(page("Unknown account", `<p id="unknown">No account ${login.replace(/[^\w.@-]/g, "")}</p>`));
      }
      return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end(
      page(
        "Test IdP sign-in",
        `<h1>Test IdP</h1><form method="post" action="/interaction/${details.uid}/login">` +
          `<label>Account <input id="login" name="login" autofocus></label>` +
          `<button id="idp-submit" type="submit">Sign in</button></form>`,
      ),
    );
  } catch (err) {
    res.writeHead(400, { "content-type": "text/plain" });
    res.end(String(err));
  }
});

console.log(JSON.stringify({ issuer }));
