import { answerOf } from '../answers.js';
import { stateKey } from '../answers.js';
import { STATE_ICONS } from './icons.jsx';

const thumbnails = new Map(); // photo id -> object URL, made once

function thumbnailOf(photo) {
  if (!photo.thumbnail) return null;
  if (!thumbnails.has(photo.id)) thumbnails.set(photo.id, URL.createObjectURL(new Blob([photo.thumbnail], { type: 'image/jpeg' })));
  return thumbnails.get(photo.id);
}

/** The farmer's photos, newest first, each with where it stands; one tap shows its answer. */
export function History({ app, state }) {
  const { photos, selected, language } = state;
  const when = new Intl.DateTimeFormat(safeLocale(language), { dateStyle: 'short', timeStyle: 'short' });
  return (
    <section class="history">
      <h2>{app.t('app.history')}</h2>
      {photos.length === 0 && <p class="small">{app.t('app.history.empty')}</p>}
      <ul data-testid="history">
        {photos.map((photo) => {
          const Icon = STATE_ICONS[photo.state];
          const answer = answerOf(photo);
          const src = thumbnailOf(photo) ?? (answer.label ? `examples/${answer.label}.jpg` : null);
          return (
            <li key={photo.id}>
              <button type="button" class={`item state-${photo.state} ${answer.label ? `label-${answer.label}` : ''} ${photo.id === selected ? 'selected' : ''}`}
                data-testid="history-item" data-state={photo.state} data-job-id={photo.jobId ?? ''} data-photo-id={photo.id}
                onClick={() => app.select(photo.id)}>
                {src ? <img src={src} alt="" width="56" height="56" /> : <span class="no-thumb" />}
                <span class="item-text">
                  <span class="item-state"><Icon size={18} /> {app.t(stateKey(photo))}</span>
                  {answer.label && <span class="item-label">{app.t(`label.${answer.label}.name`)}</span>}
                  <span class="item-time">{when.format(photo.takenAt)}</span>
                </span>
              </button>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function safeLocale(language) {
  try {
    return Intl.DateTimeFormat.supportedLocalesOf([language]).length ? language : 'en';
  } catch {
    return 'en';
  }
}
