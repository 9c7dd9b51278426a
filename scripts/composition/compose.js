#!/usr/bin/env node
// Composes the subgraph SDL files of a directory with The Guild's
// @theguild/federation-composition, an implementation independent of the
// graphql-composition crate our gateway composes with, so a schema that only
// our composer accepts is caught here.
//
//   node compose.js DIR    composes DIR/*.graphql, one subgraph per file,
//                          named after the file (tenant.graphql -> tenant)
//
// Exits 0 and writes DIR/supergraph.graphql when they compose; exits 1 with
// one line per composition error otherwise, 2 on a usage or input problem.
// scripts/check-composition installs the packages and sets NODE_PATH.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { parse } = require("graphql");
const { composeServices, compositionHasErrors } = require("@theguild/federation-composition");

// The file the supergraph is written to; it is not a subgraph itself.
const SUPERGRAPH_FILE = "supergraph.graphql";

function fail(status, message) {
  console.error(`compose.js: ${message}`);
  process.exit(status);
}

// Reads and parses every subgraph file. A syntax error is reported with the
// file and position, since composition never sees such a schema.
function readSubgraphs(dir) {
  let files;
  try {
    files = fs.readdirSync(dir);
  } catch (error) {
    fail(2, `cannot read ${dir}: ${error.message}`);
  }
  files = files.filter((file) => file.endsWith(".graphql") && file !== SUPERGRAPH_FILE).sort();
  if (files.length === 0) {
    fail(2, `no *.graphql files in ${dir}`);
  }

  return files.map((file) => {
    const name = path.basename(file, ".graphql");
    const source = fs.readFileSync(path.join(dir, file), "utf8");
    try {
      return { name, typeDefs: parse(source) };
    } catch (error) {
      const where = (error.locations || []).map((l) => `:${l.line}:${l.column}`).join("");
      fail(1, `subgraph ${name} does not parse (${file}${where}): ${error.message}`);
    }
  });
}

function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1 || args[0].startsWith("-")) {
    fail(2, "usage: node compose.js DIR");
  }
  const dir = args[0];
  const subgraphs = readSubgraphs(dir);
  const names = subgraphs.map((subgraph) => subgraph.name).join(", ");

  // One line per error, led by its stable code, so a failure in a CI log
  // reads without a stack trace.
  const result = composeServices(subgraphs);
  if (compositionHasErrors(result)) {
    console.error(`compose.js: the subgraphs ${names} do not compose:`);
    for (const error of result.errors) {
      const code = (error.extensions && error.extensions.code) || "COMPOSITION_ERROR";
      console.error(`  [${code}] ${error.message}`);
    }
    process.exit(1);
  }

  fs.writeFileSync(path.join(dir, SUPERGRAPH_FILE), result.supergraphSdl);
  console.log(`compose.js: ${subgraphs.length} subgraphs compose (${names})`);
}

main();
