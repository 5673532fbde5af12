/**
 * The photo on the phone, before anything else: decoded upright (createImageBitmap applies the EXIF orientation),
 * scaled so its long side is at most 1024 px and saved as JPEG (a 4 MB camera photo becomes ~150 KB for 2G, and
 * loses its EXIF, location included), with a small thumbnail for the history. And the saved JPEG decoded again
 * to RGB pixels for the on-device model: the very bytes the server will decode.
 */

export const LONG_SIDE = 1024;
export const QUALITY = 0.85;
const THUMB_SIDE = 96;

function canvasOf(width, height) {
  if (typeof OffscreenCanvas !== 'undefined') return new OffscreenCanvas(width, height);
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function toJpeg(canvas, quality) {
  if (canvas.convertToBlob) return canvas.convertToBlob({ type: 'image/jpeg', quality });
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('no JPEG'))), 'image/jpeg', quality));
}

export function fitted(width, height, longSide) {
  const scale = Math.min(1, longSide / Math.max(width, height));
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

async function drawScaled(bitmap, longSide, quality) {
  const [width, height] = fitted(bitmap.width, bitmap.height, longSide);
  const canvas = canvasOf(width, height);
  const context = canvas.getContext('2d');
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, 0, 0, width, height);
  return { blob: await toJpeg(canvas, quality), width, height };
}

/** A camera file -> {blob (JPEG, long side <= 1024), width, height, thumbnail (ArrayBuffer), originalBytes}. */
export async function downscale(file, { longSide = LONG_SIDE, quality = QUALITY } = {}) {
  const bitmap = await createImageBitmap(file);
  try {
    const photo = await drawScaled(bitmap, longSide, quality);
    const thumb = await drawScaled(bitmap, THUMB_SIDE, 0.7);
    return { ...photo, thumbnail: await thumb.blob.arrayBuffer(), originalBytes: file.size };
  } finally {
    bitmap.close?.();
  }
}

/** JPEG bytes -> {width, height, data: RGB}, with no colour management (the server does none). */
export async function decodeRGB(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  try {
    const canvas = canvasOf(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    const rgb = new Uint8Array(bitmap.width * bitmap.height * 3);
    for (let i = 0, p = 0; p < rgb.length; i += 4, p += 3) {
      rgb[p] = data[i]; rgb[p + 1] = data[i + 1]; rgb[p + 2] = data[i + 2];
    }
    return { width: bitmap.width, height: bitmap.height, data: rgb };
  } finally {
    bitmap.close?.();
  }
}
