"use strict";
// The registry's dashboard: services, instances and the registry's own state,
// kept live with blocking queries on /v1/discovery/services.
//
// Every value that comes from the registry is inserted as text (the DOM's
// text nodes), never as HTML: names and metadata are chosen by whoever
// registers, and the page must stay safe whatever they chose. The token lives
// in this tab's sessionStorage only and is sent as a Bearer token.
(() => {
  const TOKEN_KEY = "service-discovery-token";
  const WAIT = "30s";
  const RETRY_MS = 2000;
  // What the token may do, asked through a read: signing in never sends a write.
  const TOKEN_ACCESS = "/v1/discovery/token";
  // Counted apart: an instance in maintenance is out of healthy reads,
  // whatever its probes say, so it is neither shown nor counted as healthy.
  const STATES = ["healthy", "unhealthy", "unknown", "maintenance"];

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    canWrite: false,
    services: {},
    index: 0,
    generation: 0, // a new login ends the previous poll loop
    open: new Map(), // service name -> whether its <details> is open
  };

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children); // strings become text nodes
    return node;
  }

  function api(path, options = {}) {
    const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.token}` };
    return fetch(path, { ...options, headers, cache: "no-store" });
  }

  function relative(iso) {
    if (!iso) return "never";
    const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 2) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return `${Math.floor(seconds / 3600)} h ago`;
  }

  function timeCell(iso) {
    return el("td", { "data-time": iso || "", title: iso || "" }, relative(iso));
  }

  function refreshTimes() {
    for (const cell of document.querySelectorAll("[data-time]")) {
      cell.textContent = relative(cell.getAttribute("data-time"));
    }
  }

  // The state a row shows and the counts use: maintenance wins over the status.
  function shownState(instance) {
    return instance.maintenance ? "maintenance" : instance.status;
  }

  function checkType(instance) {
    return (instance.check && instance.check.type) || "http";
  }

  function metadataChips(instance) {
    return Object.entries(instance.metadata || {}).map(([key, value]) => `${key}=${value}`);
  }

  // Only a tagged instance's body has `tags`.
  function tags(instance) {
    return instance.tags || [];
  }

  function chipsCell(chips, chipClass) {
    const cell = el("td");
    for (const chip of chips) cell.append(el("span", { class: chipClass }, chip));
    return cell;
  }

  // The filter matches what a row displays, as it reads (a chip `zone=us`, a
  // tag, an address `host:port`, `maintenance` and its reason); every word
  // typed must be found.
  function matches(words, name, instance) {
    if (words.length === 0) return true;
    const shown = [name, instance.instance_id, `${instance.host}:${instance.port}`,
      instance.status, shownState(instance), checkType(instance), ...metadataChips(instance),
      ...tags(instance)];
    if (instance.maintenance) shown.push(instance.maintenance.reason || "");
    const haystack = shown.join("\n").toLowerCase();
    return words.every((word) => haystack.includes(word));
  }

  function counts(instances) {
    const result = Object.fromEntries(STATES.map((state) => [state, 0]));
    for (const instance of instances) {
      const state = shownState(instance);
      result[state] = (result[state] || 0) + 1;
    }
    return result;
  }

  function actions(name, instance) {
    const cell = el("td");
    if (!state.canWrite) return cell;
    const path = `${encodeURIComponent(name)}/${encodeURIComponent(instance.instance_id)}`;
    if ("maintenance" in instance) {
      const on = instance.maintenance !== null;
      cell.append(el("button", {
        type: "button", class: "action", textContent: on ? "end maintenance" : "maintenance",
        onclick: () => act(on ? "End maintenance of" : "Put in maintenance", name, instance,
          `/v1/discovery/maintenance/${path}`, on ? "DELETE" : "PUT",
          on ? undefined : JSON.stringify({ reason: "dashboard" })),
      }));
    }
    cell.append(el("button", {
      type: "button", class: "action", textContent: "unregister",
      onclick: () => act("Unregister", name, instance, `/v1/discovery/unregister/${path}`, "DELETE"),
    }));
    return cell;
  }

  async function act(verb, name, instance, path, method, body) {
    if (!window.confirm(`${verb} ${name} / ${instance.instance_id}?`)) return;
    const headers = body ? { "Content-Type": "application/json" } : {};
    const response = await api(path, { method, headers, body });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      window.alert(`${verb} failed: ${response.status} ${problem.message || ""}`);
    }
    // The poll loop shows the change when the index rises.
  }

  function statusCell(instance) {
    if (!instance.maintenance) {
      return el("td", { class: `status ${instance.status}` }, instance.status);
    }
    // Drained: not green whatever the probes say; the measured status beside it.
    return el("td", { class: "status maintenance", title: `measured: ${instance.status}` },
      "maintenance", el("span", { class: "measured" }, ` (${instance.status})`));
  }

  function instanceRow(name, instance) {
    const check = checkType(instance);
    const maintenance = instance.maintenance
      ? `${instance.maintenance.reason || "no reason given"} `
        + `(${relative(instance.maintenance.since)})` : "";
    return el("tr", { "data-instance": instance.instance_id },
      el("td", {}, instance.instance_id),
      statusCell(instance),
      el("td", {}, `${instance.host}:${instance.port}`),
      el("td", {}, String(instance.load_percentage ?? "")),
      timeCell(instance.last_heartbeat),
      timeCell(instance.last_health_check),
      el("td", {}, check),
      el("td", {}, maintenance),
      chipsCell(metadataChips(instance), "meta"),
      chipsCell(tags(instance), "tag"),
      actions(name, instance));
  }

  function serviceBlock(name, instances, words, total) {
    const shown = instances.filter((instance) => matches(words, name, instance));
    if (shown.length === 0) return null;
    const byStatus = counts(instances);
    const details = el("details", { class: "service", "data-service": name });
    details.open = state.open.has(name) ? state.open.get(name) : total <= 200 || words.length > 0;
    details.addEventListener("toggle", () => state.open.set(name, details.open));
    const summary = el("summary", {}, el("span", { class: "name" }, name));
    for (const status of STATES) {
      summary.append(el("span", { class: `count status ${status}`, "data-count": status },
        `${byStatus[status]} ${status}`));
    }
    const head = el("tr", {}, ...["instance", "status", "address", "load", "last heartbeat",
      "last check", "check", "maintenance", "metadata", "tags", ""].map((label) => el("th", {}, label)));
    const table = el("table", {}, el("thead", {}, head),
      el("tbody", {}, ...shown.map((instance) => instanceRow(name, instance))));
    details.append(summary, table);
    return details;
  }

  function render() {
    const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    const names = Object.keys(state.services).sort();
    const all = names.flatMap((name) => state.services[name]);
    const byStatus = counts(all);
    $("summary").hidden = false;
    $("summary").replaceChildren(`${names.length} services, ${all.length} instances: `
      + `${byStatus.healthy} healthy, ${byStatus.unhealthy} unhealthy, ${byStatus.unknown} unknown, `
      + `${byStatus.maintenance} in maintenance`
      + (state.canWrite ? "" : " (read-only token)"));
    const blocks = names.map((name) => serviceBlock(name, state.services[name], words, all.length));
    $("services").replaceChildren(...blocks.filter(Boolean));
  }

  function banner(text, stale = false) {
    $("banner").hidden = !text;
    $("banner").className = stale ? "stale" : "";
    $("banner").textContent = text;
  }

  async function refreshHealth(stale) {
    try {
      const health = await (await fetch("/health", { cache: "no-store" })).json();
      $("registry").textContent = `${health.frontend || ""} ${health.version || ""}`;
      const notes = [];
      if (stale) notes.push("store unreachable: showing the last known state");
      if (health.store && health.store.state && health.store.state !== "ok") {
        notes.push(`store: ${health.store.state}`);
      }
      if (health.self_preservation) {
        notes.push(`self-preservation: ${health.self_preservation_reason || "on"}`);
      }
      banner(notes.join("; "), stale || notes.length > 0);
    } catch (error) {
      banner("registry unreachable, retrying", true);
    }
  }

  function showLogin(message) {
    state.generation += 1;
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("login").hidden = false;
    $("logout").hidden = true;
    $("summary").hidden = true;
    $("services").replaceChildren();
    $("login-error").textContent = message || "";
  }

  async function start() {
    const generation = ++state.generation;
    $("login").hidden = true;
    $("logout").hidden = false;
    const asked = await api(TOKEN_ACCESS).catch(() => null);
    if (asked && asked.status === 401) return showLogin("That token was refused.");
    // Anything but a clear "read-write" (an unreachable registry, an older one
    // without the endpoint) offers no writes: the registry still decides each one.
    const access = asked && asked.ok ? await asked.json().catch(() => ({})) : {};
    if (generation !== state.generation) return;
    state.canWrite = access.access === "read-write";
    state.index = 0;
    while (generation === state.generation) {
      let response;
      try {
        response = await api(`/v1/discovery/services?index=${state.index}&wait=${WAIT}`);
      } catch (error) {
        banner("registry unreachable, retrying", true);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      if (generation !== state.generation) return;
      if (response.status === 401 || response.status === 403) {
        return showLogin("The registry refused the token.");
      }
      if (!response.ok) {
        banner(`registry answered ${response.status}, retrying`, true);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      // An index lower than ours means the registry restarted: take it as is.
      state.index = Number(response.headers.get("X-Discovery-Index") || 0);
      state.services = (await response.json()).services || {};
      render();
      await refreshHealth(response.headers.get("X-Discovery-Stale") === "true");
    }
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, state.token);
    start();
  });
  $("logout").addEventListener("click", () => showLogin(""));
  $("filter").addEventListener("input", render);
  setInterval(refreshTimes, 1000);
  if (state.token) start(); else showLogin("");
})();
