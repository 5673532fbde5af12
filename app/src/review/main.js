// The workbench: who is logged in (and the CSRF token), then the queue, driven by keys or buttons.
import './review.css';
import { ReviewApi } from './api.js';
import { actionFor } from './keys.js';
import { Queue } from './queue.js';
import { render } from './screen.js';
import { TEXT } from './strings.js';
import { zoomable } from './zoom.js';

const root = document.getElementById('workbench');
const api = new ReviewApi();
let preloaded = null; // held, so the photo after this one finishes loading (and stays in the cache) meanwhile
const queue = new Queue(api, (url) => { preloaded = Object.assign(new Image(), { src: url }); });

let name = '';

async function logOut() {
  await api.logOut().catch(() => {}); // logged out or not, the login page is where to go
  window.location.assign('/login?next=/review');
}

function show() {
  const image = render(root, queue, { act, logOut, name });
  if (image) zoomable(image);
  document.body.dataset.state = queue.current ? 'item' : 'empty';
}

function fail(error) {
  if (error.status === 401) {
    root.replaceChildren(Object.assign(document.createElement('p'), { textContent: TEXT.loggedOut }),
      Object.assign(document.createElement('a'), { href: '/login?next=/review', textContent: TEXT.logIn }));
    return;
  }
  const note = Object.assign(document.createElement('p'), { className: 'error', role: 'alert', textContent: TEXT.error + error.message });
  root.prepend(note);
}

async function act(action) {
  try {
    if (action.undo) await queue.undo();
    else await queue.answer(action.skip ? { skip: true } : { label: action.label });
    show();
  } catch (error) {
    fail(error);
  }
}

document.addEventListener('keydown', (event) => {
  const action = actionFor(event);
  if (!action) return;
  event.preventDefault();
  act(action);
});

(async () => {
  try {
    ({ name } = await api.me());
    await queue.start();
    show();
  } catch (error) {
    fail(error);
  }
})();
