import { useEffect, useState } from 'preact/hooks';

import { Answer } from './Answer.jsx';
import { Capture, Waiting } from './Capture.jsx';
import { Header, Pairing } from './Header.jsx';
import { History } from './History.jsx';

function useAppState(app) {
  const [state, setState] = useState(app.state);
  useEffect(() => app.subscribe(setState), [app]);
  return state;
}

/** The one screen: connect, photograph, see the answer, look back. */
export function Screen({ app }) {
  const state = useAppState(app);
  if (!state.catalogue) return null;
  // The photo tapped in the history, else the newest: its answer is what the farmer came back for.
  const selected = state.photos.find((p) => p.id === state.selected) ?? state.photos[0] ?? null;
  const connected = state.pairing === 'paired';
  return (
    <>
      <Header app={app} state={state} />
      <main>
        <Pairing app={app} state={state} />
        {connected && <Capture app={app} state={state} />}
        <Waiting app={app} state={state} />
        {selected && <Answer app={app} photo={selected} />}
        <History app={app} state={state} />
      </main>
      <footer>
        {connected && state.model === 'getting' && <p class="small" data-testid="model-status" data-state="getting">{app.t('app.model.getting')}</p>}
        {connected && state.model === 'ready' && <p class="small" data-testid="model-status" data-state="ready">{app.t('app.model.ready')}</p>}
      </footer>
    </>
  );
}
