/**
 * One photo's upload with tus-js-client (resumable, in the page: a service worker has no XMLHttpRequest), in small
 * chunks for 2G, resumed from the server's offset after a cut or a restart, with the photo's Idempotency-Key on
 * every request. The upload's URL is kept in the photo's outbox record (OutboxUrlStorage), so a restarted app asks
 * the server where it stood (HEAD) instead of starting again.
 */

import { ApiError, classify, errorFor } from './api.js';

export const CHUNK_BYTES = 32 * 1024;
const RETRY_DELAYS = [0, 1_000, 3_000]; // within one attempt, reset by tus whenever bytes got through; then the outbox waits
const STALL_MS = 60_000; // no byte moved for this long: the link is dead even if the request is not
const PREFIX = 'mhogo-photo:';

/** tus-js-client's urlStorage, backed by the outbox: the fingerprint is the photo's id. */
export class OutboxUrlStorage {
  constructor(outbox) {
    this.outbox = outbox;
  }

  async findAllUploads() {
    return [];
  }

  async findUploadsByFingerprint(fingerprint) {
    const url = await this.outbox.uploadUrl(fingerprint.slice(PREFIX.length));
    return url ? [{ uploadUrl: url, urlStorageKey: fingerprint }] : [];
  }

  /** Nothing here: the outbox clears the URL in the same write that records the job (Outbox.sent), so no moment
   * exists where the URL is gone and the job not yet known; a stale URL is overwritten by addUpload. */
  async removeUpload() {}

  async addUpload(fingerprint, upload) {
    await this.outbox.setUploadUrl(fingerprint.slice(PREFIX.length), upload.uploadUrl);
    return fingerprint;
  }
}

function errorFromTus(error) {
  const response = error?.originalResponse;
  if (!response) return new ApiError('network', { cause: error?.causingError ?? error });
  return errorFor(response.getStatus(), response.getHeader('Retry-After'), response.getBody?.() ?? '');
}

/** An upload answered "complete" without a job (its last answer was lost before the job was made): an empty PATCH at
 * the end finishes it and gives the job. */
async function finishEmpty(url, length, headers, fetchImpl) {
  let response;
  try {
    response = await fetchImpl(url, {
      method: 'PATCH', body: new Uint8Array(0), cache: 'no-store',
      headers: { ...headers, 'Tus-Resumable': '1.0.0', 'Upload-Offset': String(length), 'Content-Type': 'application/offset+octet-stream' },
    });
  } catch (cause) {
    throw new ApiError('network', { cause });
  }
  if (!response.ok) throw errorFor(response.status, response.headers.get('Retry-After'), await response.text().catch(() => ''));
  const jobId = response.headers.get('Mhogo-Job-Id');
  if (!jobId) throw new ApiError('transient', { status: response.status, problem: { detail: 'complete upload without a job' } });
  return jobId;
}

/**
 * Sends one photo. Resolves {jobId, retries, resumes, resumedFrom}; rejects with an ApiError (kind as in api.js)
 * carrying the same counts.
 */
export function uploadPhoto({ Upload, endpoint, token, photo, blob, urlStorage, onProgress, fetchImpl = globalThis.fetch?.bind(globalThis), stallMs = STALL_MS }) {
  const headers = { Authorization: `Bearer ${token}`, 'Idempotency-Key': photo.id };
  const stats = { retries: 0, resumes: 0, resumedFrom: null };
  let jobId = null;
  let upload;
  let watchdog;

  return new Promise((resolve, reject) => {
    const fail = (error) => {
      clearTimeout(watchdog);
      reject(Object.assign(error, stats));
    };
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        upload.abort(); // tus sends nothing more; the outbox tries again later, from the server's offset
        fail(new ApiError('network', { cause: new Error(`no progress for ${stallMs / 1000} s`) }));
      }, stallMs);
    };

    upload = new Upload(blob, {
      endpoint,
      chunkSize: CHUNK_BYTES,
      retryDelays: RETRY_DELAYS,
      headers,
      metadata: { filetype: photo.type || 'image/jpeg' },
      fingerprint: async () => PREFIX + photo.id, // canvas-made blobs have no name or date: the photo's id
      urlStorage,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onAfterResponse(request, response) {
        alive();
        const id = response.getHeader('Mhogo-Job-Id');
        if (id) jobId = id;
        if (request.getMethod() === 'HEAD' && response.getStatus() === 200) {
          stats.resumes++;
          if (stats.resumedFrom === null) stats.resumedFrom = Number(response.getHeader('Upload-Offset'));
        }
      },
      onProgress(sent, total) {
        alive();
        onProgress?.(sent, total);
      },
      onShouldRetry(error) {
        const status = error?.originalResponse?.getStatus() ?? 0;
        const retry = status === 0 ? globalThis.navigator?.onLine !== false : status === 423 || classify(status) === 'transient';
        if (retry) stats.retries++;
        return retry;
      },
      onSuccess() {
        clearTimeout(watchdog);
        if (jobId) {
          resolve({ jobId, ...stats });
          return;
        }
        finishEmpty(upload.url, blob.size ?? blob.length, headers, fetchImpl).then((id) => resolve({ jobId: id, ...stats }), fail);
      },
      onError(error) {
        fail(errorFromTus(error));
      },
    });

    alive();
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    }, fail);
  });
}
