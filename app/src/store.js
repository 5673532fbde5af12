/**
 * The app's IndexedDB (through idb): everything that must outlive a closed app or a restarted phone.
 *
 *   settings   key -> value: the device token, the chosen language, holds, the on-device model's description
 *   photos     one record per photo, its state and answers (keyPath id, which is also its Idempotency-Key)
 *   photoBytes the downscaled JPEG of a photo not yet accepted by the server (deleted once it has a job)
 *   feedback   the farmer's "it was not right", waiting to be sent (keyPath key, its Idempotency-Key)
 *   events     what the app reports to POST /v1/events, waiting to be sent (keyPath event_id)
 */

import { openDB } from 'idb';

export const DB_NAME = 'mhogo';
const VERSION = 1;

export function openStore(name = DB_NAME) {
  return openDB(name, VERSION, {
    upgrade(db) {
      db.createObjectStore('settings');
      const photos = db.createObjectStore('photos', { keyPath: 'id' });
      photos.createIndex('state', 'state');
      photos.createIndex('jobId', 'jobId');
      db.createObjectStore('photoBytes');
      db.createObjectStore('feedback', { keyPath: 'key' });
      db.createObjectStore('events', { keyPath: 'event_id' });
    },
  });
}

export class Settings {
  constructor(db) {
    this.db = db;
  }

  get(key) {
    return this.db.get('settings', key);
  }

  set(key, value) {
    return this.db.put('settings', value, key);
  }

  delete(key) {
    return this.db.delete('settings', key);
  }
}
