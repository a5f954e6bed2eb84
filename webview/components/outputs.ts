// outputs.ts — the selected run's exports (merged LoRAs, merged models): where each went, its verify.json summary,
// and buttons to reveal the folder in the explorer or open the report. While a merge/export of the run is going, a
// line says so (its prompts, progress and Cancel are the command's own, in the workbench).
import type { OutputsMessage } from '../../schemas/generated/webview-messages';
import { button, tag } from '../ui/toolkit';

export type OpenWhat = 'reveal' | 'report';

const BUSY: Record<NonNullable<OutputsMessage['busy']>, string> = {
  mergeLevels: 'Merging the adapter levels',
  exportMerged: 'Exporting the merged model',
  exportGguf: 'Exporting to GGUF and checking it in llama.cpp',
};

export class Outputs {
  readonly root = document.createElement('section');
  private readonly status = document.createElement('p');
  private readonly list = document.createElement('ul');

  constructor(private readonly open: (output: string, what: OpenWhat) => void) {
    this.root.id = 'outputs';
    const h = document.createElement('h3');
    h.textContent = 'Exports of this run';
    this.status.className = 'outputs-status';
    this.root.append(h, this.status, this.list);
  }

  /** Shows `m` (the selected run's outputs), or nothing for no run. */
  set(m: OutputsMessage | undefined, completed: boolean): void {
    this.root.dataset.busy = m?.busy ?? '';
    this.status.textContent = m?.busy ? `${BUSY[m.busy]}… (progress and Cancel are in the notification)`
      : m?.outputs.length ? '' : completed ? 'None yet: Merge levels, Export merged model and Export to GGUF write next to the run folder.'
      : 'Merge levels, Export merged model and Export to GGUF are available once the run has completed.';
    this.list.replaceChildren(...(m?.outputs ?? []).map((o) => {
      const li = document.createElement('li');
      li.dataset.output = o.output;
      li.dataset.verify = o.status;
      const name = document.createElement('code');
      name.textContent = o.name;
      name.title = o.output;
      const summary = document.createElement('span');
      summary.className = 'summary';
      summary.textContent = o.summary;
      const row = document.createElement('div');
      row.className = 'output-row';
      row.append(
        tag(o.status === 'pass' ? 'verified' : o.status, `verify verify-${o.status}`), name,
        button('Reveal in Explorer', { title: `Show ${o.output} in the explorer`, onClick: () => this.open(o.output, 'reveal') }),
        button('Open verify.json', { title: 'The export\'s forward check: reference vs exported logits', onClick: () => this.open(o.output, 'report') }),
      );
      li.append(row, summary);
      return li;
    }));
  }
}
