// The sign-in page: carries `next` through the form, says why a sign-in
// failed, and offers to sign out when a session is live.

const params = new URLSearchParams(location.search);
const next = params.get('next');
// A path on this server only: one '/' not followed by '/' or '\', and no
// space, control character or backslash (browsers drop tabs and read '\'
// as '/'); the server applies the same rule.
if (next && /^\/(?![/\\])[^\s\\\x00-\x1f\x7f]*$/.test(next)) {
  document.getElementById('next').value = next;
}

const message = document.getElementById('message');
const say = (text) => {
  message.textContent = text;
  message.hidden = false;
};
const failed = params.get('failed');
if (failed === 'key') say('That key is not known to this server: it is mistyped, or it was revoked.');
if (failed === 'scope') say('That key may not read traces: it needs the read scope.');
if (params.has('signed_out')) say('Signed out.');

async function showSession() {
  let r;
  try {
    r = await fetch('/api/v1/whoami', { headers: { accept: 'application/json' } });
  } catch {
    return;
  }
  if (!r.ok) return;
  const who = await r.json();
  if (!who.signed_in) return;
  document.getElementById('who-key').textContent = who.key;
  document.getElementById('who-tenant').textContent = who.tenant;
  document.getElementById('who-scopes').textContent = who.scopes.join(', ');
  document.getElementById('csrf').value = who.csrf;
  document.getElementById('signed-in').hidden = false;
  document.querySelector('#sign-in h1').textContent = 'Sign in with another key';
}

showSession();
document.getElementById('key').focus();
