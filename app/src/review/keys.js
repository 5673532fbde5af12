// One key per answer: 1-5 the classes in the model's order, n not cassava, u unusable, s skip, z undo.
export const CLASSES = ['cbb', 'cbsd', 'cgm', 'cmd', 'healthy'];

export const KEYS = {
  1: { label: 'cbb' },
  2: { label: 'cbsd' },
  3: { label: 'cgm' },
  4: { label: 'cmd' },
  5: { label: 'healthy' },
  n: { label: 'not_cassava' },
  u: { label: 'unusable' },
  s: { skip: true },
  z: { undo: true },
};

// What a key press asks for, or null: never while typing in a field, never with a modifier (the browser's own), never
// a key held down (its repeats would label the photos that follow, unseen).
export function actionFor(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return null;
  const tag = event.target && event.target.tagName;
  if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return null;
  return KEYS[String(event.key).toLowerCase()] || null;
}

// The key that gives an answer, for the buttons' hints.
export function keyFor(action) {
  return Object.keys(KEYS).find((key) => JSON.stringify(KEYS[key]) === JSON.stringify(action));
}
