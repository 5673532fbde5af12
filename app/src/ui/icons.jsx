// Pictograms, drawn inline (no requests, allowed by the page's CSP): they carry the meaning for farmers who read
// little; the words beside them are the catalogue's.

const Svg = ({ children, size = 24, label }) => (
  <svg class="icon" viewBox="0 0 24 24" width={size} height={size} fill="none" stroke="currentColor" stroke-width="2"
    stroke-linecap="round" stroke-linejoin="round" role={label ? 'img' : undefined} aria-label={label} aria-hidden={label ? undefined : 'true'}>
    {children}
  </svg>
);

export const Camera = (p) => (
  <Svg {...p}><path d="M3 8h3l2-3h8l2 3h3v11H3z" /><circle cx="12" cy="13" r="4" /></Svg>
);

export const Leaf = (p) => (
  <Svg {...p}><path d="M5 19C5 10 10 5 20 4c0 10-5 15-13 15z" /><path d="M5 19l8-8" /></Svg>
);

export const LeafInFrame = (p) => (
  <Svg {...p}><path d="M3 7V3h4M17 3h4v4M21 17v4h-4M7 21H3v-4" /><path d="M7 17c0-6 3-9 10-10 0 7-3 10-9 10z" /></Svg>
);

export const Sun = (p) => (
  <Svg {...p}><circle cx="12" cy="12" r="4" /><path d="M12 2v2M12 20v2M2 12h2M20 12h2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4" /></Svg>
);

export const Still = (p) => (
  <Svg {...p}><rect x="8" y="3" width="8" height="14" rx="1.5" /><path d="M5 21h14M12 17v4M3 8l2 1M3 12h2M21 8l-2 1M21 12h-2" /></Svg>
);

export const Clock = (p) => (
  <Svg {...p}><circle cx="12" cy="12" r="9" /><path d="M12 7v5l3 2" /></Svg>
);

export const Up = (p) => (
  <Svg {...p}><path d="M12 19V5M6 11l6-6 6 6" /></Svg>
);

export const Check = (p) => (
  <Svg {...p}><path d="M4 12l5 5L20 6" /></Svg>
);

export const Cross = (p) => (
  <Svg {...p}><path d="M6 6l12 12M18 6L6 18" /></Svg>
);

export const NoSignal = (p) => (
  <Svg {...p}><path d="M2 20h2M7 20v-4M12 20v-8M17 20V8M22 20V4M3 3l18 18" /></Svg>
);

export const Phone = (p) => (
  <Svg {...p}><rect x="7" y="2" width="10" height="20" rx="2" /><path d="M11 18h2" /></Svg>
);

export const Cloud = (p) => (
  <Svg {...p}><path d="M7 18h10a4 4 0 0 0 0-8 6 6 0 0 0-11.5 1.5A3.5 3.5 0 0 0 7 18z" /></Svg>
);

export const ThumbUp = (p) => (
  <Svg {...p}><path d="M7 11v9H4v-9zM7 11l4-7c1.5 0 2.5 1 2 3l-1 3h6a2 2 0 0 1 2 2l-2 6a2 2 0 0 1-2 2H7" /></Svg>
);

export const ThumbDown = (p) => (
  <Svg {...p}><path d="M7 13V4H4v9zM7 13l4 7c1.5 0 2.5-1 2-3l-1-3h6a2 2 0 0 0 2-2l-2-6a2 2 0 0 0-2-2H7" /></Svg>
);

export const STATE_ICONS = { waiting: Clock, sending: Up, sent: Check, diagnosed: Leaf, rejected: Cross, failed: Cross, refused: Cross };
