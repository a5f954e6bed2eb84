// Types of scripts/build-deps.mjs for TypeScript callers (test/unit/build-deps.test.ts).
export interface Distro {
  id: string;
  idLike: string[];
}
export type Sudo = 'passwordless' | 'password' | 'absent';
export interface Facts {
  missing: string[] | null;
  uid: number;
  sudo: Sudo;
  distro: Distro;
}
export type Decision =
  | { kind: 'ok' }
  | { kind: 'skip'; message: string }
  | { kind: 'install'; packages: string[]; commands: string[][]; message: string }
  | { kind: 'stop'; packages: string[]; command: string; message: string };
export const APT_PACKAGES: string[];
export function isDebianLike(distro: Distro): boolean;
export function decide(facts: Facts): Decision;
export function parseOsRelease(text: string): Distro;
export function missingPackages(packages: string[]): string[] | null;
export function sudoState(): Sudo;
export function probe(packages: string[]): Facts;
export function check(opts?: { packages?: string[]; dryRun?: boolean; log?: (line: string) => void }): Decision;
