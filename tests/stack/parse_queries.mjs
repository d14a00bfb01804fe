// Parses LogQL and PromQL expressions with the grammars Grafana and Prometheus
// ship for their query editors, and prints each syntax tree as JSON.
//
// Input (stdin): [{"id": "...", "lang": "logql" | "promql", "expr": "..."}]
// Output (stdout): [{"id": "...", "errors": [{"from": N, "to": N}], "tree": NODE}]
// where NODE is {"name": "...", "from": N, "to": N, "children": [NODE, ...]}.
// Grafana variables must be substituted before parsing: `$__auto` is no LogQL.
import { readFileSync } from 'node:fs';
import { parser as logqlParser } from '@grafana/lezer-logql';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';

const PARSERS = { logql: logqlParser, promql: promqlParser };

function toJson(cursor, errors) {
  const node = { name: cursor.name, from: cursor.from, to: cursor.to, children: [] };
  if (cursor.type.isError) {
    errors.push({ from: cursor.from, to: cursor.to });
  }
  if (cursor.firstChild()) {
    do {
      node.children.push(toJson(cursor, errors));
    } while (cursor.nextSibling());
    cursor.parent();
  }
  return node;
}

function parseOne({ id, lang, expr }) {
  const parser = PARSERS[lang];
  if (!parser) {
    throw new Error(`query ${id}: unknown language ${JSON.stringify(lang)}, expected logql or promql`);
  }
  const errors = [];
  const tree = toJson(parser.parse(expr).cursor(), errors);
  return { id, errors, tree };
}

const queries = JSON.parse(readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(queries.map(parseOne)));
