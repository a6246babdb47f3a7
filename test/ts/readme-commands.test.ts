// The docs cannot drift from the CLI unnoticed: every `dmfr` command written in README.md and
// docs/*.md is checked against the CLI's own parsers — TypeScript verbs against the parseArgs
// options their commands use (ts/cli/*.ts), Python verbs against the argparse tree that
// `python -m dmfr.cli` builds (test/python/cli_parsers.py).
// - A complete command (`npm run --silent dmfr -- …` with no `…` or `|` placeholder) is parsed for
//   real, as the CLI would parse it; `run` / `exp create` also build their config (--preset,
//   --method, --set paths) with loadConfig.
// - Every other mention (a synopsis in a code block, an inline `dmfr VERB …`) must name a known
//   verb (and sub-verb), and each `--flag` it shows must be one that verb accepts.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { expOptions } from '../../ts/cli/exp.ts';
import { joinOptions } from '../../ts/cli/join.ts';
import { runOptions } from '../../ts/cli/run.ts';
import { serveOptions } from '../../ts/cli/serve.ts';
import { studyOptions } from '../../ts/cli/study.ts';
import { parseCommandLine } from '../../ts/cli/usage.ts';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { HAVE_PYTHON, PYTHON } from './helpers.ts';

type Options = NonNullable<ParseArgsConfig['options']>;
interface PyParser {
  flags: string[];
  subs: Record<string, PyParser>;
}
interface Command {
  where: string; // file:line
  args: string[]; // after `dmfr`
  complete: boolean;
}

/** The TypeScript verbs' options; `--help`/`-h` of every verb is answered by ts/cli/main.ts. */
const TS_VERBS: Record<string, Options> = { run: runOptions(), serve: serveOptions(), exp: expOptions(), join: joinOptions(), study: studyOptions() };

/** Shell words: whitespace-separated, with '…' and "…" quoting (enough for the docs' commands). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g)) words.push(m[1] ?? m[2]?.replace(/\\(.)/g, '$1') ?? m[3]!);
  return words;
}

const withoutComment = (line: string) => line.replace(/\s#\s.*$/, '');
const NPM = /^\s*(?:\$\s+)?npm run --silent dmfr -- (.*)$/;
const CODE_DMFR = /^\s*(?:\$\s+)?dmfr ([a-z][a-z0-9|-]*(?:\s[\s\S]*)?)$/; // a command line in a code block (not `dmfr run:` output)

/** Every dmfr command of one markdown file. */
function commandsIn(file: string, text: string): Command[] {
  const out: Command[] = [];
  const lines = text.split('\n');
  const prose: string[] = [];
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (/^\s*```/.test(raw)) {
      fenced = !fenced;
      prose.push('');
      continue;
    }
    const code = fenced || /^ {4,}\S/.test(raw);
    prose.push(code ? '' : raw);
    if (!code) continue;
    const start = i;
    let line = withoutComment(raw);
    // Continuations: a trailing backslash, or (in a synopsis) an indented line of [--options].
    while (i + 1 < lines.length && (/\\\s*$/.test(line) || /^\s+[[(]|^\s+--/.test(lines[i + 1]!)) && !/^\s*```/.test(lines[i + 1]!)) {
      line = `${line.replace(/\\\s*$/, '')} ${withoutComment(lines[++i]!).trim()}`;
      prose.push('');
    }
    const npm = NPM.exec(line);
    const bare = CODE_DMFR.exec(line);
    const rest = npm?.[1] ?? bare?.[1];
    if (rest === undefined) continue;
    out.push({ where: `${file}:${start + 1}`, args: shellWords(rest), complete: Boolean(npm) && !/…|\s\|\s/.test(rest) });
  }
  // Inline code in prose (it may wrap across lines): `dmfr VERB …` or `npm run --silent dmfr -- VERB …`.
  const body = prose.join('\n');
  for (const m of body.matchAll(/`(?:npm run --silent )?dmfr (?:-- )?([a-z][^`]*)`/g)) {
    const line = body.slice(0, m.index).split('\n').length;
    out.push({ where: `${file}:${line}`, args: shellWords(m[1]!.replace(/\s+/g, ' ')), complete: false });
  }
  return out;
}

const flagsOf = (args: string[]) => [...args.join(' ').matchAll(/(?:^|[\s[(|])(--[a-z0-9][a-z0-9-]*)/g)].map((m) => m[1]!);
const tsFlags = (o: Options) => new Set(['--help', ...Object.keys(o).map((k) => `--${k}`)]);

/** What is wrong with one command, by name only (verb, sub-verb, flags); [] when nothing is. */
function nameProblems(c: Command, py: Record<string, PyParser>): string[] {
  const [verbs = '', next = '', ...rest] = c.args;
  const problems: string[] = [];
  for (const verb of verbs.split('|')) {
    let known: Set<string>;
    if (TS_VERBS[verb]) known = tsFlags(TS_VERBS[verb]);
    else if (py[verb]) {
      const parser = py[verb];
      const subs = Object.keys(parser.subs);
      const named = next.split('|');
      if (subs.length && /^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$/.test(next)) {
        const unknown = named.filter((s) => !parser.subs[s]);
        if (unknown.length) problems.push(`${c.where}: dmfr ${verb} has no sub-verb '${unknown.join("', '")}' (known: ${subs.join(', ')})`);
        known = new Set(named.flatMap((s) => parser.subs[s]?.flags ?? []));
      } else known = new Set([...parser.flags, ...Object.values(parser.subs).flatMap((s) => s.flags)]); // a placeholder: any of them
    } else {
      problems.push(`${c.where}: unknown verb 'dmfr ${verb}'`);
      continue;
    }
    for (const f of flagsOf([next, ...rest])) if (!known.has(f)) problems.push(`${c.where}: dmfr ${verb}${py[verb]?.subs[next] ? ` ${next}` : ''} has no flag ${f}`);
  }
  return problems;
}

/** A complete TypeScript command, parsed as its verb parses it (and its config built). */
function tsParseProblem(c: Command): string | null {
  const [verb, ...rest] = c.args;
  try {
    const { values, positionals } = parseCommandLine(rest, TS_VERBS[verb!]!);
    const v = values as Record<string, string | string[] | boolean | undefined>;
    const configFile = verb === 'run' ? positionals[0] : verb === 'exp' && positionals[0] === 'create' ? positionals[1] : undefined;
    if ((verb === 'run' || (verb === 'exp' && positionals[0] === 'create')) && configFile === undefined) {
      loadConfig({ preset: v.preset as string, method: v.method as string, steps: v.steps ? Number(v.steps) : undefined, nproc: v.nproc ? Number(v.nproc) : undefined, sets: v.set as string[] });
    }
    return null;
  } catch (e) {
    return `${c.where}: dmfr ${c.args.join(' ')}: ${(e as Error).message}`;
  }
}

function pythonParsers(commands: string[][]): { tree: Record<string, PyParser>; errors: (string | null)[] } {
  const out = execFileSync(PYTHON, [path.join(REPO_ROOT, 'test', 'python', 'cli_parsers.py')], {
    cwd: REPO_ROOT,
    env: { ...process.env, PYTHONPATH: path.join(REPO_ROOT, 'python') },
    input: JSON.stringify(commands),
    encoding: 'utf8',
    timeout: 120_000,
  });
  return JSON.parse(out);
}

/** Every problem of these commands: names against the parsers, complete commands parsed for real. */
function check(commands: Command[]): string[] {
  const pyComplete = commands.filter((c) => c.complete && !TS_VERBS[c.args[0]!]);
  const { tree, errors } = pythonParsers(pyComplete.map((c) => c.args));
  const problems = commands.flatMap((c) => nameProblems(c, tree));
  pyComplete.forEach((c, i) => {
    if (errors[i] && tree[c.args[0]!]) problems.push(`${c.where}: dmfr ${c.args.join(' ')}: ${errors[i]}`);
  });
  for (const c of commands.filter((x) => x.complete && TS_VERBS[x.args[0]!])) {
    const p = tsParseProblem(c);
    if (p) problems.push(p);
  }
  return problems;
}

function docsCommands(): Command[] {
  const files = ['README.md', ...readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  return files.flatMap((f) => commandsIn(f, readFileSync(path.join(REPO_ROOT, f), 'utf8')));
}

describe.skipIf(!HAVE_PYTHON)('the docs’ dmfr commands', () => {
  it('finds the commands of README.md and docs/*.md, and every one parses with the CLI’s own parsers', () => {
    const commands = docsCommands();
    // The README's complete commands are among them, each verb of the CLI at least once.
    const complete = commands.filter((c) => c.complete && c.where.startsWith('README.md'));
    expect(complete.length).toBeGreaterThanOrEqual(15);
    for (const verb of ['run', 'serve', 'exp', 'join', 'data', 'eval', 'analyze', 'model', 'export', 'embed']) {
      expect(commands.some((c) => c.args[0]!.split('|').includes(verb)), verb).toBe(true);
    }
    expect(check(commands)).toEqual([]);
  }, 180_000);

  it('reports a made-up flag, sub-verb or verb, in complete commands and in mentions', () => {
    const doc = [
      '```',
      'npm run --silent dmfr -- run --preset quick --made-up 3',
      'npm run --silent dmfr -- data inspect /data/x --made-up',
      'npm run --silent dmfr -- run --preset quick --set train.no_such_field=1',
      'npm run --silent dmfr -- data inspect /data/x --limit',
      'dmfr eval templates --media M [--made-up-too X]',
      '                    [--json] [--bogus-continued]',
      'dmfr data pack|unzip SRC OUT',
      '```',
      'Prose with `dmfr serve --made-up-port 1` and `dmfr frobnicate --x`.',
    ].join('\n');
    const problems = check(commandsIn('fake.md', doc));
    const expected = [
      /fake.md:2: dmfr run has no flag --made-up/,
      /fake.md:2: dmfr run --preset quick --made-up 3: Unknown option '--made-up'/,
      /fake.md:3: dmfr data inspect has no flag --made-up/,
      /fake.md:3: dmfr data inspect \/data\/x --made-up: dmfr: error: unrecognized arguments: --made-up/,
      /fake.md:4: .*train.no_such_field: unknown config path/,
      /fake.md:5: dmfr data inspect \/data\/x --limit: .*--limit: expected one argument/,
      /fake.md:6: dmfr eval templates has no flag --made-up-too/,
      /fake.md:6: dmfr eval templates has no flag --bogus-continued/,
      /fake.md:8: dmfr data has no sub-verb 'unzip'/,
      /fake.md:10: dmfr serve has no flag --made-up-port/,
      /fake.md:10: unknown verb 'dmfr frobnicate'/,
    ];
    for (const re of expected) expect(problems.some((p) => re.test(p)), `${re} in\n${problems.join('\n')}`).toBe(true);
    expect(problems).toHaveLength(expected.length);
  }, 120_000);
});
