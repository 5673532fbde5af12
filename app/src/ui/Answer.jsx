import { useEffect, useState } from 'preact/hooks';

import { answerOf, certainty, LABELS } from '../answers.js';
import { Camera, Cloud, Phone, STATE_ICONS, ThumbDown, ThumbUp } from './icons.jsx';

const example = (label) => `examples/${label}.jpg`;

/** A photo's answer: the disease with its picture and colour, how sure in words, what to do; or why the photo could
 * not be read and how to take it again. Marked as the phone's (provisional) or mhogo's. */
export function Answer({ app, photo }) {
  const answer = answerOf(photo);
  if (answer.kind === 'pending') {
    const Icon = STATE_ICONS[photo.state];
    return (
      <article class="answer answer-pending" data-testid="answer-pending" data-photo-id={photo.id}>
        <p><Icon /> {app.t(`app.state.${photo.state}`)}</p>
      </article>
    );
  }
  const server = answer.source === 'server';
  return (
    <article class={`answer ${server ? 'answer-server' : 'answer-phone'} ${answer.label ? `label-${answer.label}` : 'label-none'}`}
      data-testid={server ? 'answer-server' : 'answer-phone'} data-photo-id={photo.id} data-job-id={photo.jobId ?? ''}
      data-label={answer.label ?? ''} data-reason={answer.reason ?? ''}>
      <p class="source">{server ? <Cloud /> : <Phone />} {app.t(server ? 'app.answer.server' : 'app.answer.phone')}</p>
      {answer.kind === 'diagnosis' && <Diagnosis app={app} answer={answer} />}
      {answer.kind === 'rejection' && <Retake app={app} text={app.t(`reason.${answer.reason}`)} />}
      {(answer.kind === 'failed' || answer.kind === 'refused') && <Retake app={app} text={app.t('job.failed')} />}
      {answer.kind === 'diagnosis' && <WasItRight app={app} photo={photo} label={answer.label} />}
    </article>
  );
}

function Diagnosis({ app, answer }) {
  const sure = certainty(answer.confidence);
  return (
    <>
      <div class="diagnosis">
        <img class="example" src={example(answer.label)} alt="" width="96" height="96" />
        <div>
          <h2 class="disease">{app.t(`label.${answer.label}.name`)}</h2>
          <p class={`sure sure-${sure}`} data-testid="certainty" data-certainty={sure}>{app.t(`app.sure.${sure}`)}</p>
        </div>
      </div>
      <h3>{app.t('app.what_to_do')}</h3>
      <p class="advice">{app.t(`label.${answer.label}.advice`)}</p>
    </>
  );
}

function Retake({ app, text }) {
  return (
    <>
      <p class="reason" role="alert">{text}</p>
      <label class="retake" for="capture-input"><Camera /> {app.t('app.retake')}</label>
    </>
  );
}

/** "Was this right?" Yes, or no and the picture of what it is: the farmer's word goes through the outbox. */
function WasItRight({ app, photo, label }) {
  const [picking, setPicking] = useState(false);
  useEffect(() => setPicking(false), [photo.id]);
  if (photo.feedback) return <p class="thanks" data-testid="feedback-thanks">{app.t('app.thanks')}</p>;
  return (
    <section class="feedback" data-testid="feedback">
      <h3>{app.t('app.was_it_right')}</h3>
      <div class="yes-no">
        <button type="button" data-testid="feedback-yes" onClick={() => app.feedback(photo.id, label)}><ThumbUp /> {app.t('app.yes')}</button>
        <button type="button" data-testid="feedback-no" onClick={() => setPicking(true)}><ThumbDown /> {app.t('app.no')}</button>
      </div>
      {picking && (
        <>
          <p>{app.t('app.pick')}</p>
          <ul class="pick">
            {LABELS.map((code) => (
              <li key={code}>
                <button type="button" class={`label-${code}`} data-testid={`feedback-pick-${code}`} onClick={() => app.feedback(photo.id, code)}>
                  <img src={example(code)} alt="" width="96" height="96" />
                  <span>{app.t(`label.${code}.name`)}</span>
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
