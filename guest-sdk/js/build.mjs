#!/usr/bin/env node
// Builds a hookwire plugin written in JavaScript into a WebAssembly
// component of the world `hookwire:policy/policy@0.1.0`:
//
//   node guest-sdk/js/build.mjs plugin.js -o plugin.wasm [--name N] [--version V]
//   node guest-sdk/js/build.mjs --imports any.wasm    # what a component imports
//
// The plugin is one ES module exporting the hooks it implements (`onMsg`,
// `authenticate`, `onJoin`, `storageMode`, `routePush`, or `onRawMsg`). It is
// copied next to the SDK runtime (src/guest.js, which '@hookwire/guest' is
// mapped to) and an entry module that exports the world's six functions,
// then componentize-js snapshots the lot against wit/ with the `http` and
// `fetch-event` features off: the component imports `hookwire:policy/host`
// and the wasi:cli/io/clocks/random interfaces the server provides, nothing
// else (this script checks).

import { componentize } from '@bytecodealliance/componentize-js';
import { componentWit } from '@bytecodealliance/jco';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const WORLD = 'hookwire:policy/policy@0.1.0';
const WORLD_EXPORTS = ['describe', 'authenticate', 'onJoin', 'onMsg', 'storageMode', 'routePush'];
// What the server's linker provides besides hookwire:policy/host: WASI 0.2
// (wasmtime-wasi p2), but no wasi:http.
const ALLOWED_IMPORT = /^(hookwire:policy\/(host|types)@|wasi:(cli|io|clocks|random|filesystem|sockets)\/)/;

function usage(msg) {
  if (msg) console.error(`hookwire-js-build: ${msg}`);
  console.error(
    'usage: hookwire-js-build <plugin.js> -o <out.wasm> [--name NAME] [--version VERSION] [--wit DIR] [--keep]\n' +
      '       hookwire-js-build --imports <component.wasm>...',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { wit: resolve(here, '../../wit') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === '-o' || a === '--out') opts.out = value();
    else if (a === '--name') opts.name = value();
    else if (a === '--version') opts.version = value();
    else if (a === '--wit') opts.wit = resolve(value());
    else if (a === '--keep') opts.keep = true;
    else if (a === '--imports') opts.imports = true;
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else if (opts.imports) (opts.files ??= []).push(a);
    else if (!opts.plugin) opts.plugin = a;
    else usage(`unexpected argument ${a}`);
  }
  if (opts.imports) return opts;
  if (!opts.plugin) usage('no plugin file');
  opts.out ??= join(dirname(opts.plugin), `${basename(opts.plugin, extname(opts.plugin))}.wasm`);
  return opts;
}

// '@hookwire/guest' → the copied runtime; any other bare import is refused by
// StarlingMonkey at build time anyway, with its own message.
function mapImports(src) {
  return src.replace(
    /(\bfrom\s*|\bimport\s*\(?\s*)(['"])@hookwire\/guest\2/g,
    (_, kw, q) => `${kw}${q}./guest.js${q}`,
  );
}

// The interfaces a component imports, from its WIT.
async function importsOf(bytes) {
  const wit = await componentWit(bytes);
  return [...wit.matchAll(/^\s*import ([^\s;]+);/gm)].map((m) => m[1]);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.imports) {
    for (const f of opts.files ?? usage('no component file')) {
      const names = await importsOf(await readFile(f));
      console.log(`${f}: ${names.join(' ')}`);
    }
    return;
  }
  const plugin = resolve(opts.plugin);
  await stat(plugin).catch(() => usage(`no such file: ${opts.plugin}`));
  const name = opts.name ?? basename(plugin, extname(plugin)).replace(/_/g, '-');
  const version = opts.version ?? '0.1.0';

  const dir = await mkdtemp(join(tmpdir(), 'hookwire-js-'));
  try {
    await copyFile(join(here, 'src/guest.js'), join(dir, 'guest.js'));
    await writeFile(join(dir, 'plugin.js'), mapImports(await readFile(plugin, 'utf8')));
    const entry = [
      "import { exportsFor } from './guest.js';",
      "import * as plugin from './plugin.js';",
      `const e = exportsFor(plugin, ${JSON.stringify({ name, version })});`,
      ...WORLD_EXPORTS.map((f) => `export function ${f}(...a) { return e.${f}(...a); }`),
      '',
    ].join('\n');
    await writeFile(join(dir, 'entry.js'), entry);

    const started = Date.now();
    const { component } = await componentize({
      sourcePath: join(dir, 'entry.js'),
      witPath: opts.wit,
      worldName: WORLD,
      disableFeatures: ['http', 'fetch-event'],
    });
    const extra = (await importsOf(component)).filter((n) => !ALLOWED_IMPORT.test(n));
    if (extra.length) {
      throw new Error(`the component imports what the server does not provide: ${extra.join(', ')}`);
    }
    await writeFile(opts.out, component);
    console.error(
      `hookwire-js-build: ${opts.out} (${name} ${version}, ${(component.length / 1048576).toFixed(1)} MiB, ${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
  } finally {
    if (opts.keep) console.error(`hookwire-js-build: sources kept in ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`hookwire-js-build: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
