// toolkit.ts — the ONE module that knows which component library draws the dashboard's controls
// (@vscode/webview-ui-toolkit, pinned). Everything else calls these factories, so swapping the library (the toolkit
// is archived upstream; vscode-elements is the successor) means changing this file only.
import {
  provideVSCodeDesignSystem, vsCodeBadge, vsCodeButton, vsCodeCheckbox, vsCodeDivider, vsCodeProgressRing, vsCodeTag, vsCodeTextArea,
  vsCodeTextField,
} from '@vscode/webview-ui-toolkit';

provideVSCodeDesignSystem().register(
  vsCodeButton(), vsCodeCheckbox(), vsCodeBadge(), vsCodeDivider(), vsCodeTag(), vsCodeProgressRing(), vsCodeTextArea(), vsCodeTextField(),
);

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

/** An element with a string value (the toolkit's text field and text area). */
export type ValueElement = HTMLElement & { value: string };

/** A themed single-line field with a label; `onEnter` runs on Enter. */
export function textField(label: string, value: string, o: { id?: string; size?: number; title?: string } = {}): ValueElement {
  const f = document.createElement('vscode-text-field') as ValueElement;
  f.textContent = label;
  f.value = value;
  if (o.id) f.id = o.id;
  if (o.size) f.setAttribute('size', String(o.size));
  if (o.title) f.title = o.title;
  return f;
}

/** A themed multi-line field; Enter (without Shift) runs `onEnter`. */
export function textArea(placeholder: string, o: { id?: string; rows?: number; onEnter?: () => void } = {}): ValueElement {
  const a = document.createElement('vscode-text-area') as ValueElement;
  a.setAttribute('placeholder', placeholder);
  a.setAttribute('rows', String(o.rows ?? 3));
  a.setAttribute('resize', 'vertical');
  if (o.id) a.id = o.id;
  if (o.onEnter) {
    const run = o.onEnter;
    a.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        run();
      }
    });
  }
  return a;
}
