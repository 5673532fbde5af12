// The farmer's app starts here: the pairing code out of the address bar first, then the service worker, the
// stored state, the screen; and window.mhogo for the browser tests to wait on.
import { render } from 'preact';

import { App } from './app.js';
import { takePairingCode } from './pairing.js';
import { Screen } from './ui/Screen.jsx';
import './styles.css';

const pairingCode = takePairingCode(location, history); // before anything else can see or log it
const base = new URL('../', import.meta.url).href; // this file is <base>assets/app-<hash>.js
const app = new App({ base, languages: __MHOGO_LANGUAGES__ });

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register(new URL('sw.js', base), { scope: new URL('./', base).pathname, updateViaCache: 'none' })
    .catch((error) => console.warn('mhogo: no service worker', error));
}

const ready = app.boot({ pairingCode }).then(() => true);
const root = document.getElementById('app');
root.replaceChildren(); // the page's own "mhogo" while the script loaded
render(<Screen app={app} />, root);

window.mhogo = {
  ready,
  outboxCount: () => ready.then(() => app.outbox.count()),
  modelReady: () => ready.then(() => app.modelReady()),
  examine: (file) => ready.then(() => app.examine(file)),
  app,
};
