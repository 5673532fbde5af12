/**
 * The outbox: every photo, feedback and event is written here before the network is touched, and each step of a
 * photo's life is written before the next begins, so a closed app or a restarted phone picks up where it stood.
 *
 *   waiting --send--> sending --job id--> sent --poll--> diagnosed | rejected | failed
 *      ^                 |  \
 *      +---cut, 5xx, ----+   +--4xx (the server's last word)--> refused
 *          429/503/507
 *
 * A photo's id is its Idempotency-Key, made at capture: every attempt, before or after a restart, sends the same
 * key, so the server makes one job of it whatever happens. It leaves the outbox (waiting, sending) only when the
 * server has answered with its job id; its bytes are deleted in that same write.
 */

export const WAITING = 'waiting';
export const SENDING = 'sending';
export const SENT = 'sent';
export const DIAGNOSED = 'diagnosed';
export const REJECTED = 'rejected';
export const FAILED = 'failed';
export const REFUSED = 'refused';

export const IN_OUTBOX = [WAITING, SENDING];
export const FINAL = [DIAGNOSED, REJECTED, FAILED, REFUSED];

/** A job's status on the server -> the photo's state here. */
export function stateOfJob(status) {
  return { classified: DIAGNOSED, rejected: REJECTED, failed: FAILED }[status] ?? SENT;
}

export class OutboxError extends Error {}

export class Outbox {
  constructor(db, { now = Date.now, uuid = () => crypto.randomUUID() } = {}) {
    this.db = db;
    this.now = now;
    this.uuid = uuid;
  }

  /** The photo, with its key, into the outbox: the first thing that happens to a photo, before any network. */
  async capture({ bytes, type = 'image/jpeg', width, height, thumbnail = null }) {
    const id = this.uuid();
    const photo = {
      id, takenAt: this.now(), state: WAITING, size: bytes.byteLength, type, width, height, thumbnail,
      attempts: 0, nextAttemptAt: 0, uploadUrl: null, jobId: null, polls: 0, nextPollAt: 0, updatedAt: this.now(),
    };
    const tx = this.db.transaction(['photos', 'photoBytes'], 'readwrite');
    await Promise.all([tx.objectStore('photos').add(photo), tx.objectStore('photoBytes').add(bytes, id), tx.done]);
    return photo;
  }

  /** At start: a photo left "sending" was cut off by the app's end; it waits again (its upload URL kept). */
  async recover() {
    let count = 0;
    for (const photo of await this.db.getAllFromIndex('photos', 'state', SENDING)) {
      if (await this.change(photo.id, [SENDING], { state: WAITING })) count++;
    }
    return count;
  }

  /** Read-modify-write of one photo in one transaction; null when it is not in one of the states `from`. */
  async change(id, from, changes) {
    const tx = this.db.transaction(['photos', 'photoBytes'], 'readwrite');
    const photos = tx.objectStore('photos');
    const photo = await photos.get(id);
    if (!photo || (from && !from.includes(photo.state))) {
      await tx.done;
      return null;
    }
    const updated = { ...photo, ...(typeof changes === 'function' ? changes(photo) : changes), updatedAt: this.now() };
    await photos.put(updated);
    if (!IN_OUTBOX.includes(updated.state)) await tx.objectStore('photoBytes').delete(id);
    await tx.done;
    return updated;
  }

  get(id) {
    return this.db.get('photos', id);
  }

  bytes(id) {
    return this.db.get('photoBytes', id);
  }

  async all() {
    const photos = await this.db.getAll('photos');
    return photos.sort((a, b) => b.takenAt - a.takenAt);
  }

  /** Photos not yet accepted by the server: the number the farmer sees. */
  async count() {
    const [waiting, sending] = await Promise.all(IN_OUTBOX.map((state) => this.db.countFromIndex('photos', 'state', state)));
    return waiting + sending;
  }

  /** Waiting photos whose time has come, oldest first. */
  async dueUploads(now = this.now()) {
    const waiting = await this.db.getAllFromIndex('photos', 'state', WAITING);
    return waiting.filter((p) => p.nextAttemptAt <= now).sort((a, b) => a.takenAt - b.takenAt);
  }

  async duePolls(now = this.now()) {
    const sent = await this.db.getAllFromIndex('photos', 'state', SENT);
    return sent.filter((p) => p.nextPollAt <= now).sort((a, b) => a.nextPollAt - b.nextPollAt);
  }

  /** The earliest time a waiting photo may be sent (Infinity when none waits). */
  async nextUploadTime() {
    const waiting = await this.db.getAllFromIndex('photos', 'state', WAITING);
    return Math.min(Infinity, ...waiting.map((p) => p.nextAttemptAt));
  }

  /** The earliest time a sent photo's job is to be asked about (Infinity when none is). */
  async nextPollTime() {
    const sent = await this.db.getAllFromIndex('photos', 'state', SENT);
    return Math.min(Infinity, ...sent.map((p) => p.nextPollAt));
  }

  beginSend(id) {
    return this.change(id, [WAITING], (p) => ({ state: SENDING, attempts: p.attempts + 1, lastAttemptAt: this.now() }));
  }

  /** Not through this time: waits again, from `at`, keeping its upload URL to resume from the server's offset. */
  sendFailed(id, at, error) {
    return this.change(id, [SENDING], { state: WAITING, nextAttemptAt: at, lastError: String(error ?? '').slice(0, 200) });
  }

  /** The server answered with a job: out of the outbox, its bytes deleted in the same write. */
  async sent(id, jobId) {
    if (!jobId) throw new OutboxError('a photo leaves the outbox only with its job id');
    return this.change(id, [SENDING, WAITING], { state: SENT, jobId, sentAt: this.now(), uploadUrl: null, nextPollAt: this.now() });
  }

  /** The server's last word on the photo (a 4xx): kept with the reason, never sent again. */
  refused(id, status, detail) {
    return this.change(id, [SENDING, WAITING], { state: REFUSED, refusal: { status, detail: String(detail ?? '').slice(0, 500) }, uploadUrl: null });
  }

  /** A job as GET /v1/jobs/{id} shows it: final, or polled again from `nextPollAt`. */
  polled(id, job, nextPollAt) {
    const state = stateOfJob(job.status);
    return this.change(id, [SENT], (p) => ({
      state, jobStatus: job.status, result: job.result ?? null, rejection: job.rejection ?? null,
      polls: p.polls + 1, nextPollAt: state === SENT ? nextPollAt : 0, answeredAt: state === SENT ? null : this.now(),
    }));
  }

  setUploadUrl(id, uploadUrl) {
    return this.change(id, [WAITING, SENDING], { uploadUrl });
  }

  async uploadUrl(id) {
    return (await this.get(id))?.uploadUrl ?? null;
  }

  /** The phone's own provisional answer, kept with the photo. */
  setPhoneAnswer(id, phone) {
    return this.change(id, null, { phone });
  }

  /** Jobs of this phone listed by the server (GET /v1/jobs): a reinstalled app gets its history back. Returns how
   * many were new or changed. */
  async merge(jobs) {
    let changed = 0;
    for (const job of jobs) {
      const state = stateOfJob(job.status);
      const local = (job.idempotency_key && (await this.get(job.idempotency_key)))
        || (await this.db.getFromIndex('photos', 'jobId', job.job_id));
      if (!local) {
        const takenAt = Date.parse(job.created_at) || this.now();
        await this.db.put('photos', {
          id: job.idempotency_key || `job-${job.job_id}`, takenAt, state, size: 0, thumbnail: null, attempts: 0,
          nextAttemptAt: 0, uploadUrl: null, jobId: job.job_id, sentAt: takenAt, polls: 0, nextPollAt: 0,
          jobStatus: job.status, result: job.result ?? null, rejection: job.rejection ?? null, fromServer: true,
          updatedAt: this.now(),
        });
        changed++;
      } else if (local.state === SENT || IN_OUTBOX.includes(local.state)) {
        // The server has its job: whatever this phone thought (e.g. cut before the answer), it is sent.
        const updated = await this.change(local.id, null, {
          state, jobId: job.job_id, jobStatus: job.status, result: job.result ?? null, rejection: job.rejection ?? null,
          uploadUrl: null, sentAt: local.sentAt ?? this.now(), nextPollAt: this.now(),
        });
        if (updated) changed++;
      }
    }
    return changed;
  }

  // Feedback: "this was not right, it is that", each with its own Idempotency-Key, sent once its photo has a job.

  async addFeedback(photoId, label) {
    const feedback = { key: this.uuid(), photoId, label, createdAt: this.now(), attempts: 0, nextAttemptAt: 0 };
    const tx = this.db.transaction(['feedback', 'photos'], 'readwrite');
    const photo = await tx.objectStore('photos').get(photoId);
    if (photo) await tx.objectStore('photos').put({ ...photo, feedback: { label, at: this.now() }, updatedAt: this.now() });
    await tx.objectStore('feedback').add(feedback);
    await tx.done;
    return feedback;
  }

  async dueFeedback(now = this.now()) {
    const all = await this.db.getAll('feedback');
    return all.filter((f) => f.nextAttemptAt <= now).sort((a, b) => a.createdAt - b.createdAt);
  }

  async feedbackFailed(key, at) {
    const tx = this.db.transaction('feedback', 'readwrite');
    const feedback = await tx.store.get(key);
    if (feedback) await tx.store.put({ ...feedback, attempts: feedback.attempts + 1, nextAttemptAt: at });
    await tx.done;
    return feedback ? feedback.attempts + 1 : 0;
  }

  feedbackDone(key) {
    return this.db.delete('feedback', key);
  }

  async nextFeedbackTime() {
    const all = await this.db.getAll('feedback');
    return Math.min(Infinity, ...all.map((f) => f.nextAttemptAt));
  }

  // Events for POST /v1/events: sent in batches, each with its event_id made here (the server stores it once).

  addEvent(kind, data = {}, jobId = null) {
    const event = { event_id: this.uuid(), kind, at: new Date(this.now()).toISOString(), data };
    if (jobId) event.job_id = jobId;
    return this.db.add('events', event).then(() => event);
  }

  async eventBatch(limit = 100) {
    return (await this.db.getAll('events')).sort((a, b) => a.at.localeCompare(b.at)).slice(0, limit);
  }

  async eventCount() {
    return this.db.count('events');
  }

  async removeEvents(ids) {
    const tx = this.db.transaction('events', 'readwrite');
    await Promise.all([...ids.map((id) => tx.store.delete(id)), tx.done]);
  }
}
