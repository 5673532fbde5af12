import { Camera, Cloud, LeafInFrame, NoSignal, Still, Sun } from './icons.jsx';

/** The one big action: a label over the camera input (the reliable way on phones), and how to take the photo. */
export function Capture({ app, state }) {
  const onChange = (event) => {
    const file = event.currentTarget.files?.[0];
    event.currentTarget.value = ''; // the same photo may be chosen again
    if (file) app.capture(file);
  };
  return (
    <section class="capture-area">
      <label class={state.busyCapturing ? 'capture busy' : 'capture'} data-testid="capture-button">
        <input id="capture-input" data-testid="capture-input" type="file" accept="image/*" capture="environment" onChange={onChange} />
        <Camera size={44} />
        <span>{app.t('app.take_photo')}</span>
      </label>
      <ul class="guide">
        <li><LeafInFrame size={36} /><span>{app.t('app.guide.one_leaf')}</span></li>
        <li><Sun size={36} /><span>{app.t('app.guide.daylight')}</span></li>
        <li><Still size={36} /><span>{app.t('app.guide.still')}</span></li>
      </ul>
    </section>
  );
}

/** How many photos wait for the network, always in view; and why, when the network or the server says so. */
export function Waiting({ app, state }) {
  const { waiting, sender } = state;
  return (
    <section class="waiting" aria-live="polite">
      <p class={waiting ? 'count count-waiting' : 'count'} data-testid="waiting-count" data-count={waiting}>
        {waiting ? <Cloud /> : null}
        {waiting ? app.t('app.waiting', { n: waiting }) : app.t('app.all_sent')}
      </p>
      {waiting > 0 && sender.offline && <p class="notice" data-testid="offline"><NoSignal /> {app.t('app.offline')}</p>}
      {waiting > 0 && sender.busy && <p class="notice" data-testid="busy">{app.t('app.busy')}</p>}
      {waiting > 0 && state.persisted === false && <p class="small">{app.t('app.storage.not_kept')}</p>}
    </section>
  );
}
