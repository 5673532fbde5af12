import { Leaf } from './icons.jsx';

/** The app's name, and the languages: each by its flag and its own name, always in view. */
export function Header({ app, state }) {
  return (
    <header class="top">
      <div class="brand">
        <Leaf size={28} />
        <div>
          <div class="brand-name">mhogo</div>
          <div class="brand-tagline">{app.t('app.tagline')}</div>
        </div>
      </div>
      <nav class="languages" data-testid="language-switcher" aria-label={app.t('app.language')} data-language={state.language}>
        {app.languages.map((l) => (
          <button type="button" key={l.code} lang={l.code} data-testid={`language-${l.code}`}
            class={l.code === state.language ? 'language current' : 'language'} aria-pressed={l.code === state.language ? 'true' : 'false'}
            onClick={() => app.setLanguage(l.code)}>
            <span class="flag" aria-hidden="true">{l.flag}</span>
            <span class="language-name">{l.name}</span>
          </button>
        ))}
      </nav>
      {app.languages.find((l) => l.code === state.language)?.checked === false && (
        <p class="unchecked" data-testid="translation-unchecked">{app.t('app.language.unchecked')}</p>
      )}
    </header>
  );
}

/** Whether this phone is connected to mhogo, and what to do when it is not. */
export function Pairing({ app, state }) {
  const { pairing, pairNotice } = state;
  if (pairing === 'revoked') {
    return (
      <section class="notice notice-bad" data-testid="pairing-status" data-state="revoked">
        <p data-testid="revoked" role="alert">{app.t('app.revoked')}</p>
      </section>
    );
  }
  if (pairing === 'paired') {
    return (
      <section class="pairing-ok" data-testid="pairing-status" data-state="paired">
        {pairNotice === 'done' && <p class="notice notice-good">{app.t('app.pair.done')}</p>}
        {pairNotice === 'used' && <p class="notice notice-bad">{app.t('app.pair.used')}</p>}
      </section>
    );
  }
  return (
    <section class="notice" data-testid="pairing-status" data-state={pairing}>
      <h2>{app.t('app.pair.title')}</h2>
      {pairing === 'pairing' && <p>{app.t('app.pair.working')}</p>}
      {pairing === 'used' && <p class="notice-bad" role="alert">{app.t('app.pair.used')}</p>}
      {pairing === 'unpaired' && pairNotice === 'later' && <p>{app.t('app.offline')}</p>}
      {pairing !== 'pairing' && <p>{app.t('app.pair.help')}</p>}
    </section>
  );
}
