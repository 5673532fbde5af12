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
  answeredPhoto: 'the photo you answered',
  you: 'You said',
  model: 'The model said',
  noModel: 'The model has no answer for this photo.',
  skipped: 'Skipped.',
  loggedOut: 'Your login has ended.',
  logIn: 'Log in again',
  logOut: 'Log out',
  zoom: 'Scroll or pinch to zoom, drag to move; double-click to reset.',
  details: 'Why it was in the queue',
  error: 'Something went wrong: ',
  passed: (why) => `The last photo was passed over: ${why}`,
};

// Why a photo is in the queue, in words that give away nobody's answer: the server's own sentences name what the
// model, a farmer or the training label said, so they are shown only once the agronomist has answered (no anchoring).
export const REASONS = {
  farmer_disagreed: 'A farmer said the diagnosis was wrong.',
  probably_mislabelled: 'Its training label looks doubtful.',
  unsure: 'The model hesitated between two answers.',
  gate_borderline: 'The check for a cassava leaf was borderline.',
  drift: 'Unlike the photos the model learnt from (light, colour or sharpness).',
  audit: 'A random check of the model.',
};

export function reasonText(reason) {
  return REASONS[reason.code] || String(reason.code).replaceAll('_', ' ');
}
