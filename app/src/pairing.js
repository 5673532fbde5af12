/**
 * Pairing: the extension officer's link, `<origin>/app/#pair=<code>`, opened once. The code is taken out of the
 * address bar at once (so it is in no history, bookmark or screenshot), exchanged for the device token
 * (POST /v1/pairings), and the token kept in IndexedDB only. A code that could not be sent (no network) waits in
 * IndexedDB and is tried again.
 */

export function takePairingCode(location, history) {
  const match = /(?:^#|&)pair=([^&]+)/.exec(location.hash || '');
  if (!match) return null;
  history.replaceState(history.state, '', location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

/** 'paired' | 'used' (404 or 410: used, expired or unknown) | 'later' (kept to try again). */
export async function pair({ code, api, settings }) {
  let answer;
  try {
    answer = await api.pair(code);
  } catch (error) {
    if (error.kind === 'final') {
      await settings.delete('pairing_code');
      return { state: 'used', error };
    }
    await settings.set('pairing_code', code);
    return { state: 'later', error };
  }
  await settings.set('token', answer.token);
  await settings.set('device', { id: answer.device_id, name: answer.device_name, pairedAt: Date.now() });
  await settings.delete('revoked');
  await settings.delete('pairing_code');
  return { state: 'paired', device: answer };
}

/** The server's list of this phone's jobs into the history, newest first, until a page brings nothing new. */
export async function syncHistory({ api, outbox, maxPages = 5 }) {
  let before = null;
  let changed = 0;
  for (let page = 0; page < maxPages; page++) {
    const { jobs = [], next = null } = await api.jobs(before);
    const fresh = await outbox.merge(jobs);
    changed += fresh;
    if (!next || fresh === 0) break;
    before = next;
  }
  return changed;
}
