// The normdsl extension: the grammar and language configuration (package.json), and the language
// server, started as `normdsl lsp` over standard input and output.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate() {
  const config = vscode.workspace.getConfiguration("normdsl");
  const server = { command: config.get("server.path", "normdsl"), args: ["lsp"] };
  client = new LanguageClient("normdsl", "normdsl", server, {
    documentSelector: [{ language: "normdsl" }],
    initializationOptions: { inlayHints: config.get("inlayHints"), lineLength: config.get("lineLength") },
    synchronize: { configurationSection: "normdsl" },
  });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
