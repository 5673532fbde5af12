// The agronomist's queue on the page: the item shown, the next one already fetched (and its photo loaded), and the
// answer just given with the model's own answer, which only then is shown.
export class Queue {
  constructor(api, preload = () => {}) {
    this.api = api;
    this.preload = preload; // starts loading a photo's URL
    this.current = null;
    this.upcoming = null;
    this.last = null; // { item, answer, result } of the answer just given
    this.busy = false;
  }

  async start() {
    this.current = await this.api.next();
    await this.prefetch();
    return this.current;
  }

  async prefetch() {
    this.upcoming = this.current ? await this.api.next(this.current.item_id) : null;
    if (this.upcoming) this.preload(this.upcoming.photo_url);
  }

  // Answer the item shown ({label} or {skip: true}); the next one is shown at once, and the one after fetched.
  async answer(body) {
    if (!this.current || this.busy) return null;
    this.busy = true;
    try {
      const item = this.current;
      const result = await this.api.answer(item.item_id, body);
      this.last = { item, answer: body, result };
      this.current = this.upcoming || (await this.api.next());
      if (this.current && result.counts) this.current = { ...this.current, counts: result.counts };
      await this.prefetch();
      return this.last;
    } finally {
      this.busy = false;
    }
  }

  // Take back the latest label: its item is shown again; the one that was showing comes after it.
  async undo() {
    if (this.busy) return null;
    this.busy = true;
    try {
      const undone = await this.api.undo();
      if (!undone) return null;
      const again = await this.api.item(undone.item_id);
      if (this.current && this.current.item_id !== again.item_id) this.upcoming = this.current;
      this.current = again;
      this.last = null;
      return again;
    } catch (error) {
      if (error.status === 404) return null; // nothing to undo
      throw error;
    } finally {
      this.busy = false;
    }
  }
}
