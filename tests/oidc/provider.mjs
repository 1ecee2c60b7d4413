// A real OpenID Provider for Countersign's SSO tests: panva's certified oidc-provider,
// with its development login and consent pages (any password; the login names the account).
// Configured by the environment (tests/oidc_provider.py starts it):
//   OIDC_PORT, OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
//   OIDC_ACCOUNTS: JSON {"login": {claims...}}; the login is the account's `sub`.
import Provider from 'oidc-provider';

const env = process.env;
const accounts = JSON.parse(env.OIDC_ACCOUNTS);

const provider = new Provider(env.OIDC_ISSUER, {
  clients: [{
    client_id: env.OIDC_CLIENT_ID,
    client_secret: env.OIDC_CLIENT_SECRET,
    redirect_uris: [env.OIDC_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  pkce: { required: () => true, methods: ['S256'] },
  cookies: { keys: ['countersign-test-provider-cookies'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
  },
});

provider.listen(Number(env.OIDC_PORT), '127.0.0.1', () => {
  console.log(`listening ${env.OIDC_ISSUER}`);
});
