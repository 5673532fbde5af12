// Every string the workbench shows, in one place (agronomists read English here; the farmer's app has the catalogue).
export const NAMES = {
  cbb: 'CBB bacterial blight', cbsd: 'CBSD brown streak', cgm: 'CGM green mottle', cmd: 'CMD mosaic',
  healthy: 'Healthy', not_cassava: 'Not cassava', unusable: 'Unusable',
};
export const TEXT = {
  title: 'mhogo workbench',
  left: (n) => `${n} left for you`,
  open: (n, adjudication) => `${n} open, ${adjudication} waiting for a third opinion`,
  why: 'Why this photo',
  adjudication: 'Two agronomists disagreed: your label decides.',
  skip: 'Skip',
  undo: 'Undo',
  empty: 'Nothing is left for you. Thank you!',
  lastAnswer: 'Your last answer',
  you: 'You said',
  model: 'The model said',
  noModel: 'The model has no answer for this photo.',
  skipped: 'Skipped.',
  loggedOut: 'Your login has ended.',
  logIn: 'Log in again',
  zoom: 'Scroll or pinch to zoom, drag to move; double-click to reset.',
  error: 'Something went wrong: ',
};
