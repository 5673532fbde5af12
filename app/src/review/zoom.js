// The photo zooms (wheel, pinch) and pans (drag) with @panzoom/panzoom; a double click puts it back. No `contain`:
// the image is fitted into its frame by CSS, and panzoom's containment would push a fitted image off-centre.
import Panzoom from '@panzoom/panzoom';

export function zoomable(image) {
  const panzoom = Panzoom(image, { maxScale: 8, minScale: 1, cursor: 'grab' });
  image.parentElement.addEventListener('wheel', panzoom.zoomWithWheel);
  image.addEventListener('dblclick', () => panzoom.reset());
  return panzoom;
}
