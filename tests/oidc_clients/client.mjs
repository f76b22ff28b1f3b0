// A relying party nobody here wrote: panva's openid-client 6 (over oauth4webapi), as
// strict as it ships, run by tests/e2e/test_oidc_clients.py under the machine's Node.js.
//
//   node client.mjs '{"issuer": …, "client_id": …, "client_secret": …,
//                     "redirect_uri": …, "auth": "basic" | "default", "offline": bool}'
//
// It prints one JSON line {"authorize": URL}, reads back from stdin the URL the
// portal redirected the browser to, finishes the code flow (PKCE S256, state and
// nonce checked by the library), fetches userinfo, refreshes and revokes when asked,
// and prints one JSON line: {"claims", "userinfo", …} or {"error", "code", "status"}.
import { createInterface } from "node:readline";
import * as client from "openid-client";

const cfg = JSON.parse(process.argv[2]);

function out(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

async function main() {
  // "default": the secret as the metadata argument, no authentication method named:
  // openid-client then uses its default, client_secret_post.
  const config =
    cfg.auth === "basic"
      ? await client.discovery(
          new URL(cfg.issuer),
          cfg.client_id,
          undefined,
          client.ClientSecretBasic(cfg.client_secret),
          { execute: [client.allowInsecureRequests] },
        )
      : await client.discovery(new URL(cfg.issuer), cfg.client_id, cfg.client_secret, undefined, {
          execute: [client.allowInsecureRequests],
        });
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const scope = "openid profile email groups" + (cfg.offline ? " offline_access" : "");
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: cfg.redirect_uri,
    scope,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
    nonce,
  });
  out({ authorize: url.href });

  const lines = createInterface({ input: process.stdin });
  const back = await new Promise((resolve) => lines.once("line", resolve));
  lines.close();

  const tokens = await client.authorizationCodeGrant(config, new URL(back), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const result = {
    claims,
    userinfo,
    token_type: tokens.token_type,
    refreshed: null,
    revoked: null,
  };
  if (cfg.offline) {
    const renewed = await client.refreshTokenGrant(config, tokens.refresh_token);
    result.refreshed = {
      sub: renewed.claims()?.sub ?? null,
      new_refresh_token: renewed.refresh_token !== tokens.refresh_token,
      userinfo: (await client.fetchUserInfo(config, renewed.access_token, claims.sub)).sub,
    };
    await client.tokenRevocation(config, renewed.access_token);
    try {
      await client.fetchUserInfo(config, renewed.access_token, claims.sub);
      result.revoked = "still accepted";
    } catch (error) {
      result.revoked = error.status ?? error.code ?? String(error);
    }
  }
  out(result);
}

main().catch((error) => {
  out({
    error: String(error),
    code: error.code ?? null,
    status: error.status ?? error.cause?.status ?? null,
    cause: error.cause && typeof error.cause === "object" ? error.cause : null,
  });
  process.exitCode = 1;
});
