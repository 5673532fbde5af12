/**
 * The server's preprocessing (ml/imaging.py) and quality gate (ml/quality.py), ported to plain JavaScript on typed
 * arrays so the phone's provisional answer sees what the server's model sees. Pure functions, no DOM: node tests
 * compare them with numbers computed by the Python functions (test/fixtures/preprocess.json).
 *
 * An image here is {width, height, data: Uint8Array of RGB, 3 bytes a pixel, row after row}.
 * Resizing follows Pillow's own convolution (libImaging/Resample.c: the same filters, supports, fixed-point
 * coefficients and two passes), not the canvas's, so the working image and the model's square match the server's
 * pixel for pixel when both start from the same decoded JPEG.
 */

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

/** Python's round(): halves to the even neighbour. */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

const FILTERS = {
  bilinear: { support: 1.0, weight: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; } },
  lanczos: { support: 3.0, weight: (x) => (x >= -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0) },
};

function sinc(x) {
  if (x === 0.0) return 1.0;
  x *= Math.PI;
  return Math.sin(x) / x;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output pixel, the first input pixel, how many
 * input pixels, and their fixed-point weights. */
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const row = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const count = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0.0;
    for (let x = 0; x < count; x++) {
      row[x] = filter.weight((x + xmin - center + 0.5) / filterscale);
      total += row[x];
    }
    for (let x = 0; x < count; x++) {
      const w = total !== 0.0 ? row[x] / total : row[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = count;
  }
  return { ksize, bounds, weights };
}

function clip8(sum) {
  const value = Math.floor(sum / ONE); // an arithmetic shift by PRECISION_BITS
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

function resampleHorizontal(image, outWidth, rowFirst, rows, c) {
  const out = new Uint8Array(outWidth * rows * 3);
  const { width, data } = image;
  for (let yy = 0; yy < rows; yy++) {
    const inRow = (yy + rowFirst) * width * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = c.bounds[xx * 2], count = c.bounds[xx * 2 + 1], k = xx * c.ksize;
      let r = HALF, g = HALF, b = HALF;
      for (let x = 0; x < count; x++) {
        const w = c.weights[k + x], p = inRow + (x + xmin) * 3;
        r += data[p] * w; g += data[p + 1] * w; b += data[p + 2] * w;
      }
      const o = (yy * outWidth + xx) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return { width: outWidth, height: rows, data: out };
}

function resampleVertical(image, outHeight, c, shift) {
  const { width, data } = image;
  const out = new Uint8Array(width * outHeight * 3);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = c.bounds[yy * 2] - shift, count = c.bounds[yy * 2 + 1], k = yy * c.ksize;
    for (let xx = 0; xx < width; xx++) {
      let r = HALF, g = HALF, b = HALF;
      for (let y = 0; y < count; y++) {
        const w = c.weights[k + y], p = ((y + ymin) * width + xx) * 3;
        r += data[p] * w; g += data[p + 1] * w; b += data[p + 2] * w;
      }
      const o = (yy * width + xx) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return { width, height: outHeight, data: out };
}

/** Image.resize((width, height), LANCZOS | BILINEAR) on an RGB image, as Pillow computes it. */
export function resize(image, width, height, filterName) {
  const filter = FILTERS[filterName];
  const horizontal = width !== image.width;
  const vertical = height !== image.height;
  const ch = coefficients(image.width, width, filter);
  const cv = coefficients(image.height, height, filter);
  let current = image;
  let shift = 0;
  if (horizontal) {
    // Only the rows the vertical pass reads, as Pillow does (ybox_first .. ybox_last).
    const first = cv.bounds[0];
    const last = cv.bounds[height * 2 - 2] + cv.bounds[height * 2 - 1];
    current = resampleHorizontal(current, width, first, last - first, ch);
    shift = first;
  }
  if (vertical) current = resampleVertical(current, height, cv, shift);
  else if (!horizontal) current = { width, height, data: image.data.slice() };
  return current;
}

/** to_working_size: the longer side becomes `workSize` (Lanczos); an image already that size is kept. */
export function toWorkingSize(image, workSize) {
  const scale = workSize / Math.max(image.width, image.height);
  const width = Math.max(1, roundHalfEven(image.width * scale));
  const height = Math.max(1, roundHalfEven(image.height * scale));
  if (width === image.width && height === image.height) return image;
  return resize(image, width, height, 'lanczos');
}

const f32 = Math.fround;
const R = f32(0.299), G = f32(0.587), B = f32(0.114), EXCESS = f32(0.05);

/** Luma per pixel in float32, as numpy computes `red * 0.299 + green * 0.587 + blue * 0.114` on float32 arrays. */
export function luma(image) {
  const { data } = image;
  const gray = new Float32Array(image.width * image.height);
  for (let i = 0, p = 0; i < gray.length; i++, p += 3) {
    gray[i] = f32(f32(f32(data[p] * R) + f32(data[p + 1] * G)) + f32(data[p + 2] * B));
  }
  return gray;
}

/** Variance of the 4-neighbour Laplacian of luma (float32 Laplacian, float64 variance). */
export function laplacianVariance(gray, width, height) {
  if (Math.min(width, height) < 3) return 0.0;
  const n = (width - 2) * (height - 2);
  const lap = new Float32Array(n);
  let i = 0, sum = 0.0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const c = y * width + x;
      const v = f32(f32(f32(f32(gray[c - 1] + gray[c + 1]) + gray[c - width]) + gray[c + width]) - f32(4 * gray[c]));
      lap[i++] = v;
      sum += v;
    }
  }
  const mean = sum / n;
  let squares = 0.0;
  for (let j = 0; j < n; j++) squares += (lap[j] - mean) ** 2;
  return squares / n;
}

/** image_stats: the working-size image's figures for the quality gate (and drift checks). */
export function imageStats(image, originalSize) {
  const { data } = image;
  const pixels = image.width * image.height;
  const gray = luma(image);
  let sumR = 0, sumG = 0, sumB = 0, sumLuma = 0, white = 0, black = 0, green = 0;
  for (let i = 0, p = 0; i < pixels; i++, p += 3) {
    const r = data[p], g = data[p + 1], b = data[p + 2], y = gray[i];
    sumR += r; sumG += g; sumB += b; sumLuma += y;
    if (y >= 250) white++;
    if (y <= 5) black++;
    if (2 * g - r - b > f32(EXCESS * (r + g + b + 3))) green++;
  }
  const lumaMean = sumLuma / pixels;
  let deviations = 0.0;
  for (let i = 0; i < pixels; i++) deviations += (gray[i] - lumaMean) ** 2;
  return {
    width: originalSize[0],
    height: originalSize[1],
    luma_mean: lumaMean,
    luma_std: Math.sqrt(deviations / pixels),
    clipped_white: white / pixels,
    clipped_black: black / pixels,
    red_mean: sumR / pixels,
    green_mean: sumG / pixels,
    blue_mean: sumB / pixels,
    sharpness: laplacianVariance(gray, image.width, image.height),
    green_fraction: green / pixels,
  };
}

/** The gamma curve normalise_brightness applies, as a 256-entry table, or null when the photo is left as it is. */
export function brightnessTable(lumaMean, { target_luma: target, max_gamma_lift: maxLift }) {
  if (lumaMean >= target || lumaMean <= 1.0) return null;
  const gamma = Math.max(maxLift, Math.log(target / 255.0) / Math.log(lumaMean / 255.0));
  const table = new Uint8Array(256);
  for (let i = 0; i < 256; i++) table[i] = roundHalfEven(255.0 * (i / 255.0) ** gamma);
  return table;
}

export function normaliseBrightness(image, lumaMean, config) {
  const table = brightnessTable(lumaMean, config);
  if (table === null) return image;
  const data = new Uint8Array(image.data.length);
  for (let i = 0; i < data.length; i++) data[i] = table[image.data[i]];
  return { width: image.width, height: image.height, data };
}

/** center_square: the shorter side scaled to `size` (bilinear), the centre square cut out. */
export function centerSquare(image, size) {
  const scale = size / Math.min(image.width, image.height);
  const width = Math.max(size, roundHalfEven(image.width * scale));
  const height = Math.max(size, roundHalfEven(image.height * scale));
  const resized = width === image.width && height === image.height ? image : resize(image, width, height, 'bilinear');
  const left = Math.floor((width - size) / 2), top = Math.floor((height - size) / 2);
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    const from = ((y + top) * width + left) * 3;
    data.set(resized.data.subarray(from, from + size * 3), y * size * 3);
  }
  return { width: size, height: size, data };
}

/** quality_gate: the first reason to turn the photo away, in the order a farmer should fix them, or null. */
export function qualityGate(stats, limits) {
  if (Math.min(stats.width, stats.height) < limits.min_side_px) return 'too_small';
  if (stats.luma_mean < limits.dark_luma) return 'too_dark';
  if (stats.luma_mean > limits.bright_luma || stats.clipped_white > limits.bright_clipped_fraction) return 'too_bright';
  if (stats.sharpness < limits.blur_laplacian_var) return 'blurry';
  return null;
}

/** leaf_verdict: after the model, not a cassava leaf (the leaf gate), or a leaf too small in the frame. */
export function leafVerdict(stats, isLeaf, limits) {
  if (!isLeaf) return 'not_cassava_leaf';
  if ((stats.green_fraction ?? 1.0) < (limits.min_green_fraction ?? 0.0)) return 'leaf_too_small';
  return null;
}

/** decode -> prepare -> quality gate, on an upright RGB image: the model's input or the reason to turn it away. */
export function prepare(image, preprocessing, limits) {
  const working = toWorkingSize(image, preprocessing.work_size);
  const stats = imageStats(working, [image.width, image.height]);
  const reason = qualityGate(stats, limits);
  if (reason !== null) return { reason, stats };
  const lifted = normaliseBrightness(working, stats.luma_mean, preprocessing);
  const square = centerSquare(lifted, preprocessing.input_size);
  return { reason: null, stats, pixels: Float32Array.from(square.data) }; // (S, S, 3) NHWC, 0..255
}

/** make_prediction + the leaf gate: the answer from the graph's outputs. */
export function readOutputs(classes, probabilities, leafProbability, threshold) {
  let best = 0;
  for (let i = 1; i < probabilities.length; i++) if (probabilities[i] > probabilities[best]) best = i;
  const notLeaf = leafProbability != null && threshold != null && leafProbability < threshold;
  return {
    label: classes[best],
    confidence: probabilities[best],
    probabilities: Object.fromEntries(classes.map((name, i) => [name, probabilities[i]])),
    leafProbability: leafProbability ?? null,
    notLeaf,
  };
}

/** RGBA pixels (canvas ImageData) -> RGB image. */
export function fromRGBA(width, height, rgba) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, p = 0; p < data.length; i += 4, p += 3) {
    data[p] = rgba[i]; data[p + 1] = rgba[i + 1]; data[p + 2] = rgba[i + 2];
  }
  return { width, height, data };
}
