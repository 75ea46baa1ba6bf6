// The notes example: each note is a record `notes/<id>` in IndexedDB, synced with a
// sync-server by the engine's watch loop. The server URL and token come from the page's query
// (`?server=http://127.0.0.1:8080&token=...`); the server must list this page's origin with
// --cors-origin. Build the bundle first: `npm run build:example` in clients/js.
import { RecordStore, SyncClient, SyncEngine } from "./notes.bundle.js";

const q = new URLSearchParams(location.search);
const store = await RecordStore.indexedDb(q.get("db") ?? "notes");
const client = new SyncClient({ baseUrl: q.get("server") ?? "http://127.0.0.1:8080", token: q.get("token") ?? "" });
const engine = new SyncEngine({ client, store, waitSecs: 25 });
const $ = (id) => document.getElementById(id);

async function render() {
  const list = $("notes");
  list.replaceChildren(
    ...(await store.list("notes/")).map(([key, value]) => {
      const li = document.createElement("li");
      li.dataset.key = key;
      li.textContent = new TextDecoder().decode(value);
      return li;
    }),
  );
}

engine.onStatus((s) => {
  $("status").dataset.state = s.state;
  $("status").textContent = s.state;
  const top = s.state === "error" ? s.top : s.state === "idle" ? s.attention : undefined;
  $("error").textContent = top ? top.message : "";
});
store.subscribe(() => void render());
$("add").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  await store.put(`notes/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`, text);
  $("text").value = "";
});
await render();
engine.start();
// For tests and the console.
window.notes = { store, engine, render };
