// toolkit.ts — the ONE module that knows which component library draws the dashboard's controls
// (@vscode/webview-ui-toolkit, pinned). Everything else calls these factories, so swapping the library (the toolkit
// is archived upstream; vscode-elements is the successor) means changing this file only.
import {
  provideVSCodeDesignSystem, vsCodeBadge, vsCodeButton, vsCodeCheckbox, vsCodeDivider, vsCodeProgressRing, vsCodeTag,
} from '@vscode/webview-ui-toolkit';

provideVSCodeDesignSystem().register(vsCodeButton(), vsCodeCheckbox(), vsCodeBadge(), vsCodeDivider(), vsCodeTag(), vsCodeProgressRing());

export interface ButtonOptions {
  id?: string;
  appearance?: 'primary' | 'secondary' | 'icon';
  title?: string;
  disabled?: boolean;
  onClick: () => void;
}

/** A themed button. */
export function button(label: string, o: ButtonOptions): HTMLElement {
  const b = document.createElement('vscode-button');
  b.textContent = label;
  if (o.id) b.id = o.id;
  b.setAttribute('appearance', o.appearance ?? 'secondary');
  if (o.title) b.title = o.title;
  setDisabled(b, o.disabled ?? false);
  b.addEventListener('click', () => {
    if (!b.hasAttribute('disabled')) o.onClick();
  });
  return b;
}

export function setDisabled(el: HTMLElement, disabled: boolean): void {
  if (disabled) el.setAttribute('disabled', '');
  else el.removeAttribute('disabled');
}

/** A themed checkbox; `onChange` gets the new state. */
export function checkbox(checked: boolean, title: string, onChange: (checked: boolean) => void): HTMLElement {
  const c = document.createElement('vscode-checkbox') as HTMLElement & { checked: boolean };
  c.checked = checked;
  c.title = title;
  c.setAttribute('aria-label', title);
  c.addEventListener('change', () => onChange(c.checked));
  c.addEventListener('click', (e) => e.stopPropagation());
  return c;
}

/** A small status tag (e.g. "running"). */
export function tag(text: string, className = ''): HTMLElement {
  const t = document.createElement('vscode-tag');
  t.textContent = text;
  if (className) t.className = className;
  return t;
}

export function divider(): HTMLElement {
  return document.createElement('vscode-divider');
}

export function spinner(): HTMLElement {
  return document.createElement('vscode-progress-ring');
}
