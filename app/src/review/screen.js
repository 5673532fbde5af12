// The workbench's one screen, drawn from the queue's state: the photo large, why it is in the queue, one button per
// answer with its key, the counts, and the last answer beside the model's (shown only once answered).
import { CLASSES, keyFor } from './keys.js';
import { NAMES, TEXT, reasonText } from './strings.js';

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fill(p) {
  const node = el('span', { class: 'bar-fill' });
  node.style.width = `${Math.round(p * 100)}%`; // through the CSSOM: the page's CSP allows no inline style attribute
  return node;
}

function bars(probabilities) {
  const rows = Object.entries(probabilities || {}).sort((a, b) => b[1] - a[1]);
  return el('div', { class: 'bars' }, rows.map(([label, p]) => el('div', { class: 'bar-row', 'data-label': label, 'data-p': p },
    el('span', { class: 'bar-label' }, label.toUpperCase()),
    el('span', { class: 'bar' }, fill(p)),
    el('span', { class: 'bar-value' }, p.toFixed(2)))));
}

export function lastAnswer(last) {
  if (!last) return el('section', { class: 'last', id: 'last', 'data-testid': 'last-answer' });
  const said = last.answer.skip ? TEXT.skipped : `${TEXT.you}: ${NAMES[last.answer.label]}`;
  const model = last.result.model;
  // The photo answered, small, so that the model's answer is read against THAT photo, not the one now shown.
  return el('section', { class: 'last', id: 'last', 'data-testid': 'last-answer', 'data-item': last.item.item_id },
    el('h2', {}, TEXT.lastAnswer),
    el('div', { class: 'last-body' },
      el('img', { class: 'thumb', src: last.item.photo_url, alt: TEXT.answeredPhoto }),
      el('div', { class: 'last-text' },
        el('p', { class: 'you', 'data-testid': 'you-said' }, said),
        model ? el('div', { 'data-testid': 'model-said', 'data-label': model.label },
          el('p', { class: 'model' }, `${TEXT.model}: ${NAMES[model.label] || model.label}`), bars(model.probabilities))
          : el('p', { 'data-testid': 'no-model' }, TEXT.noModel))),
    el('details', { class: 'details' }, el('summary', {}, TEXT.details),
      el('ul', {}, (last.item.reasons || []).map((reason) => el('li', {}, reason.detail)))));
}

export function render(root, queue, actions) {
  const item = queue.current;
  root.replaceChildren();
  const header = el('header', {}, el('h1', {}, TEXT.title));
  const person = el('p', { class: 'person' }, actions.name || '', ' ',
    el('button', { type: 'button', class: 'log-out', onclick: () => actions.logOut() }, TEXT.logOut));
  const passed = queue.passed ? el('p', { class: 'passed', role: 'status', 'data-testid': 'passed' },
    TEXT.passed(queue.passed.reason)) : '';
  const button = (action, text, cls = '') => el('button', { type: 'button', class: `answer ${cls}`,
    'data-key': keyFor(action), onclick: () => actions.act(action) }, el('kbd', {}, keyFor(action)), ' ', text);
  if (!item) {
    header.append(person);
    root.append(header, passed, el('main', { class: 'empty' }, el('p', { id: 'empty' }, TEXT.empty),
      button({ undo: true }, TEXT.undo, 'quiet')), lastAnswer(queue.last));
    return null;
  }
  const counts = item.counts || {};
  header.append(el('p', { class: 'counts', id: 'counts' }, TEXT.left(counts.left_for_you ?? '?'), ' · ',
    TEXT.open(counts.open ?? '?', counts.adjudication ?? '?')), person);
  const image = el('img', { id: 'photo', src: item.photo_url, alt: `photo ${item.item_id}`, 'data-item': item.item_id });
  const reasons = el('section', { class: 'reasons' }, el('h2', {}, TEXT.why),
    item.adjudication ? el('p', { class: 'adjudication' }, TEXT.adjudication) : '',
    el('ul', {}, item.reasons.map((reason) => el('li', { 'data-code': reason.code }, reasonText(reason)))));
  const answers = el('nav', { class: 'answers' },
    CLASSES.map((label) => button({ label }, NAMES[label])),
    button({ label: 'not_cassava' }, NAMES.not_cassava, 'other'), button({ label: 'unusable' }, NAMES.unusable, 'other'),
    button({ skip: true }, TEXT.skip, 'quiet'), button({ undo: true }, TEXT.undo, 'quiet'));
  root.append(header, passed, el('main', {},
    el('div', { class: 'photo-frame', title: TEXT.zoom }, image),
    el('aside', {}, reasons, answers, lastAnswer(queue.last))));
  return image;
}
