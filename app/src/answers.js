/**
 * What the farmer is shown for a photo: the server's answer when it has come, else the phone's own provisional one,
 * else where the photo stands; and certainty in words, not a percentage.
 */

import { FINAL, REFUSED } from './outbox.js';

export const LABELS = ['cbb', 'cbsd', 'cgm', 'cmd', 'healthy'];
export const SURE_HIGH = 0.8;
export const SURE_MEDIUM = 0.55;

/** 'high' | 'medium' | 'low': the key app.sure.<word>. */
export function certainty(confidence) {
  if (confidence >= SURE_HIGH) return 'high';
  if (confidence >= SURE_MEDIUM) return 'medium';
  return 'low';
}

/** {source: 'server'|'phone'|null, kind: 'diagnosis'|'rejection'|'failed'|'refused'|'pending', label, confidence,
 * reason}. */
export function answerOf(photo) {
  if (photo.state === REFUSED) return { source: 'server', kind: 'refused' };
  if (FINAL.includes(photo.state)) {
    if (photo.state === 'diagnosed' && photo.result) {
      return { source: 'server', kind: 'diagnosis', label: photo.result.label, confidence: photo.result.confidence };
    }
    if (photo.state === 'rejected') return { source: 'server', kind: 'rejection', reason: photo.rejection?.reason ?? 'unreadable' };
    return { source: 'server', kind: 'failed' };
  }
  const phone = photo.phone;
  if (phone?.shownAt) {
    if (phone.reason) return { source: 'phone', kind: 'rejection', reason: phone.reason };
    return { source: 'phone', kind: 'diagnosis', label: phone.label, confidence: phone.confidence };
  }
  return { source: null, kind: 'pending' };
}

/** The catalogue key of a photo's state in the history. */
export function stateKey(photo) {
  return `app.state.${photo.state === REFUSED ? 'failed' : photo.state}`;
}
