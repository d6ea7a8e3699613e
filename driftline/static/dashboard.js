/* driftline dashboard. Polls /api/history once a second (the service samples its status every
   second and keeps the last 15 minutes) and draws every chart itself on <canvas>: no library,
   nothing from the internet. */
"use strict";
(function () {
  const ENSEMBLE = "ensemble";
  const ENSEMBLE_COLOR = "#f0f6fc";
  const PALETTE = ["#58a6ff", "#f0883e", "#3fb950", "#db61a2", "#a371f7", "#e3b341", "#39c5cf",
    "#ff7b72", "#7ee787", "#d2a8ff"];
  const OUTCOMES = [["learned", "learned", "#3fb950"], ["unlabelled", "unlabelled", "#58a6ff"],
    ["dead_lettered", "dead-lettered", "#f85149"]];
  const GRID = "rgba(139, 148, 158, 0.16)";
  const AXIS = "#8b949e";
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];

  const state = {
    samples: [], window: 900, retention: 900, interval: 1, online: null, colors: new Map(),
  };

  // ---- formatting ------------------------------------------------------------------------------
  const nf = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const pct = (v, d) => isNum(v) ? (v * 100).toFixed(d) + "%" : "–";
  const fixed = (v, d) => isNum(v) ? v.toFixed(d) : "–";
  function count(v) {
    if (!isNum(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e5) return (v / 1e3).toFixed(0) + "k";
    return nf.format(Math.round(v));
  }
  const rate = (v) => !isNum(v) ? "–" : v < 10 ? v.toFixed(1) : nf.format(Math.round(v));
  function duration(s) {
    if (!isNum(s)) return "–";
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  const pad2 = (n) => String(n).padStart(2, "0");
  function clock(t, seconds) {
    const d = new Date(t * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + (seconds ? ":" + pad2(d.getSeconds()) : "");
  }
  function colorOf(name) {
    if (name === ENSEMBLE) return ENSEMBLE_COLOR;
    if (!state.colors.has(name)) state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
    return state.colors.get(name);
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- the series, derived from the samples ---------------------------------------------------
  function lastOf(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }
  const sumOf = (obj) => Object.values(obj || {}).reduce((a, b) => a + (isNum(b) ? b : 0), 0);

  function derive(samples) {
    const names = [];
    for (const s of samples) {
      for (const name of Object.keys(s.models || {})) if (!names.includes(name)) names.push(name);
    }
    names.sort((a, b) => (a === ENSEMBLE ? 1 : 0) - (b === ENSEMBLE ? 1 : 0));
    const members = names.filter((n) => n !== ENSEMBLE);
    members.forEach(colorOf);
    const times = samples.map((s) => s.t);
    const field = (name, key) => samples.map((s) => {
      const m = s.models && s.models[name];
      return m && isNum(m[key]) ? m[key] : null;
    });
    const maxGap = 5 * state.interval;
    const perSecond = (get) => samples.map((s, i) => {
      if (i === 0) return null;
      const dt = s.t - samples[i - 1].t;
      const a = get(samples[i - 1]), b = get(s);
      if (!(dt > 0) || dt > maxGap || !isNum(a) || !isNum(b) || b < a) return null;
      return (b - a) / dt;
    });
    const model = (name) => ({
      name, color: colorOf(name), main: name === ENSEMBLE, width: name === ENSEMBLE ? 3 : 1.8,
    });
    const markers = [];
    for (const name of members) {
      const drifts = field(name, "drifts"), when = field(name, "last_drift_time");
      for (let i = 0; i < samples.length; i++) {
        const prev = i > 0 ? drifts[i - 1] : null;
        if (i === 0 ? (drifts[0] > 0 && when[0] !== null) : (drifts[i] > prev && prev !== null)) {
          const lo = i > 0 ? times[i - 1] - 1 : -Infinity;
          const t = when[i] !== null && when[i] > lo && when[i] <= times[i] + 1 ? when[i] : times[i];
          markers.push({t, name, color: colorOf(name), n: i === 0 ? 1 : drifts[i] - prev});
        }
      }
    }
    return {
      times, names, members, markers,
      accuracy: names.map((n) => ({...model(n), values: field(n, "accuracy")})),
      rolling: names.map((n) => ({...model(n), values: field(n, "rolling_accuracy")})),
      weights: members.map((n) => ({...model(n), values: field(n, "weight")})),
      rate: OUTCOMES.map(([key, label, color]) => ({
        name: label, color, width: 1.8, main: key === "learned",
        values: perSecond((s) => (s.events || {})[key] || 0),
      })),
      total: perSecond((s) => sumOf(s.events)),
      lag: [{
        name: "messages behind", color: "#e3b341", width: 2, main: true,
        values: samples.map((s) => (s.lag && Object.keys(s.lag).length ? sumOf(s.lag) : null)),
      }],
      checkpoint: [{
        name: "seconds since the last checkpoint", color: "#a371f7", width: 2, main: true,
        values: samples.map((s) => (s.checkpoint && isNum(s.checkpoint.age_seconds)
          ? s.checkpoint.age_seconds : null)),
      }],
    };
  }

  // ---- a line chart on a canvas ---------------------------------------------------------------
  function niceStep(span, n) {
    const raw = span / Math.max(1, n);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }
  function yTicks(lo, hi, n) {
    const step = niceStep(hi - lo, n);
    const out = [];
    for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-6; i++) {
      out.push(Math.abs(i) < 1e-9 ? 0 : i * step);  // never "-0"
    }
    return {step, ticks: out};
  }
  // y range: "accuracy" zooms on the data within [0, 1]; "unit" is [0, 1]; else [0, max].
  function yRange(kind, series, n) {
    let lo = Infinity, hi = -Infinity;
    for (const s of series) for (const v of s.values) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (kind === "unit" || !Number.isFinite(lo)) return [0, 1];
    if (kind === "accuracy") {
      const padding = Math.max((hi - lo) * 0.12, 0.02);
      lo = Math.max(0, lo - padding); hi = Math.min(1, hi + padding);
      const step = niceStep(hi - lo, n);
      return [Math.max(0, Math.floor(lo / step) * step), Math.min(1, Math.ceil(hi / step) * step)];
    }
    hi = Math.max(hi * 1.1, kind === "seconds" ? 10 : 5);
    return [0, Math.ceil(hi / niceStep(hi, n)) * niceStep(hi, n)];
  }

  class Chart {
    constructor(id, opts) {
      this.el = document.getElementById(id);
      this.canvas = this.el.querySelector("canvas");
      this.legend = this.el.querySelector(".legend");
      this.tip = this.el.querySelector(".tip");
      this.opts = opts;
      this.view = null;
      this.hoverX = null;
      this.legendKey = null;
      this.canvas.addEventListener("mousemove", (e) => {
        this.hoverX = e.clientX - this.canvas.getBoundingClientRect().left;
        this.draw();
      });
      this.canvas.addEventListener("mouseleave", () => { this.hoverX = null; this.draw(); });
      if (window.ResizeObserver) {
        new ResizeObserver(() => window.requestAnimationFrame(() => this.draw())).observe(this.canvas);
      }
    }

    update(view) {
      this.view = view;
      this.renderLegend();
      this.draw();
    }

    renderLegend() {
      const series = this.view ? this.view.series : [];
      const key = series.map((s) => s.name + "\u0000" + s.color).join("\u0001");
      if (key !== this.legendKey) {
        this.legend.replaceChildren(...series.map((s) => {
          const li = el("li", s.main ? "main" : "");
          li.dataset.model = s.name;
          const sw = el("i", "sw");
          sw.style.background = s.color;
          li.append(sw, el("span", "name", s.name), el("span", "val", "–"));
          return li;
        }));
        this.legendKey = key;
      }
      series.forEach((s, i) => {
        const li = this.legend.children[i];
        const v = lastOf(s.values);
        li.dataset.value = v === null ? "" : String(v);
        li.lastChild.textContent = this.opts.value(v);
      });
    }

    draw() {
      const c = this.canvas;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return;
      const dpr = window.devicePixelRatio || 1;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const ctx = c.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const fs = Math.max(10, parseFloat(getComputedStyle(document.documentElement).fontSize) * 0.72);
      ctx.font = fs + "px system-ui, sans-serif";
      const v = this.view;
      let points = 0;
      if (v) for (const s of v.series) points = Math.max(points, s.values.filter((x) => x !== null).length);
      this.el.dataset.points = String(points);
      if (!v || points === 0) {
        ctx.fillStyle = AXIS;
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(v && v.times.length ? this.opts.empty : "waiting for data…", w / 2, h / 2);
        this.tip.hidden = true;
        return;
      }
      const nY = Math.max(2, Math.floor(h / (fs * 3.4)));
      const [lo, hi] = yRange(this.opts.range, v.series, nY);
      const {step, ticks} = yTicks(lo, hi, nY);
      const labels = ticks.map((t) => this.opts.tick(t, step));
      const x0 = Math.ceil(Math.max(...labels.map((l) => ctx.measureText(l).width))) + 10;
      const x1 = w - 6, y0 = Math.round(fs * 0.9), y1 = h - Math.round(fs * 1.9);
      const span = Math.max(v.t1 - v.t0, 1e-6);
      const X = (t) => x0 + ((t - v.t0) / span) * (x1 - x0);
      const Y = (y) => y1 - ((y - lo) / (hi - lo || 1)) * (y1 - y0);

      // grid and axes
      ctx.lineWidth = 1;
      ctx.strokeStyle = GRID;
      ctx.fillStyle = AXIS;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ticks.forEach((t, i) => {
        const y = Math.round(Y(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
        ctx.fillText(labels[i], x0 - 6, y);
      });
      const maxLabels = Math.max(2, Math.floor((x1 - x0) / (fs * 6.5)));
      const tStep = TIME_STEPS.find((s) => span / s <= maxLabels) || 3600;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (let t = Math.ceil(v.t0 / tStep) * tStep; t <= v.t1; t += tStep) {
        const x = Math.round(X(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, y0); ctx.lineTo(x, y1); ctx.stroke();
        ctx.fillText(clock(t, tStep < 60), Math.min(Math.max(x, x0 + fs * 2), x1 - fs * 2), y1 + fs * 0.5);
      }

      // drift markers: a small triangle in the model's colour, and a dashed line down the chart
      // unless they are so many that lines would hide the data
      const shown = v.markers.filter((m) => m.t >= v.t0 && m.t <= v.t1);
      const lines = shown.length <= (x1 - x0) / 28;
      for (const m of shown) {
        const x = Math.round(X(m.t)) + 0.5;
        if (lines) {
          ctx.save();
          ctx.globalAlpha = 0.5;
          ctx.strokeStyle = m.color;
          ctx.setLineDash([3, 4]);
          ctx.beginPath(); ctx.moveTo(x, y0); ctx.lineTo(x, y1); ctx.stroke();
          ctx.restore();
        }
        ctx.fillStyle = m.color;
        ctx.beginPath();
        ctx.moveTo(x - fs * 0.4, y0 - fs * 0.75); ctx.lineTo(x + fs * 0.4, y0 - fs * 0.75);
        ctx.lineTo(x, y0 - fs * 0.05); ctx.closePath(); ctx.fill();
      }

      ctx.save();
      ctx.beginPath(); ctx.rect(x0, y0 - 2, x1 - x0, y1 - y0 + 4); ctx.clip();
      if (this.opts.stack) {
        this.drawStack(ctx, X, Y);
        ctx.restore();
        this.drawHover(ctx, X, Y, x0, x1, y0, y1);
        return;
      }
      // the lines, the ensemble's last (on top); a gap where a value is missing
      const order = v.series.slice().sort((a, b) => a.width - b.width);
      for (const s of order) {
        ctx.lineJoin = "round";
        ctx.lineCap = "round";
        ctx.strokeStyle = s.color;
        ctx.lineWidth = s.width;
        const runs = [];
        let run = [];
        s.values.forEach((y, i) => {
          if (y === null) { if (run.length) runs.push(run); run = []; } else run.push([X(v.times[i]), Y(y)]);
        });
        if (run.length) runs.push(run);
        for (const r of runs) {
          if (this.opts.fill && v.series.length === 1 && r.length > 1) {
            ctx.beginPath();
            ctx.moveTo(r[0][0], y1);
            for (const [x, y] of r) ctx.lineTo(x, y);
            ctx.lineTo(r[r.length - 1][0], y1);
            ctx.closePath();
            ctx.globalAlpha = 0.14; ctx.fillStyle = s.color; ctx.fill(); ctx.globalAlpha = 1;
          }
          ctx.beginPath();
          r.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
          if (r.length === 1) ctx.lineTo(r[0][0] + 0.01, r[0][1]);
          ctx.stroke();
        }
      }
      ctx.restore();
      this.drawHover(ctx, X, Y, x0, x1, y0, y1);
    }

    // stacked areas (shares adding up to 1): each series between the sum of those before it and
    // that sum plus its own value
    stacked() {
      const v = this.view;
      let base = v.times.map(() => 0);
      return v.series.map((s) => {
        const top = base.map((b, i) => (s.values[i] === null ? b : b + s.values[i]));
        const layer = {s, base, top};
        base = top;
        return layer;
      });
    }

    drawStack(ctx, X, Y) {
      const v = this.view;
      const present = v.times.map((_, i) => v.series.some((s) => s.values[i] !== null));
      for (const {s, base, top} of this.stacked()) {
        let i = 0;
        while (i < v.times.length) {
          if (!present[i]) { i++; continue; }
          let j = i;
          while (j + 1 < v.times.length && present[j + 1]) j++;
          ctx.beginPath();
          for (let k = i; k <= j; k++) ctx.lineTo(X(v.times[k]), Y(top[k]));
          for (let k = j; k >= i; k--) ctx.lineTo(X(v.times[k]), Y(base[k]));
          ctx.closePath();
          ctx.globalAlpha = 0.72; ctx.fillStyle = s.color; ctx.fill(); ctx.globalAlpha = 1;
          i = j + 1;
        }
      }
    }

    drawHover(ctx, X, Y, x0, x1, y0, y1) {
      const v = this.view;
      if (this.hoverX === null || this.hoverX < x0 || this.hoverX > x1 || !v.times.length) {
        this.tip.hidden = true;
        return;
      }
      const t = v.t0 + ((this.hoverX - x0) / (x1 - x0)) * (v.t1 - v.t0);
      let i = 0;
      for (let k = 1; k < v.times.length; k++) if (Math.abs(v.times[k] - t) < Math.abs(v.times[i] - t)) i = k;
      const x = Math.round(X(v.times[i])) + 0.5;
      ctx.strokeStyle = "rgba(230, 237, 243, 0.35)";
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, y0); ctx.lineTo(x, y1); ctx.stroke();
      const rows = [el("div", "t", clock(v.times[i], true))];
      const tops = this.opts.stack ? this.stacked().map((l) => l.top[i]) : null;
      v.series.forEach((s, n) => {
        const y = s.values[i];
        if (y === null) return;
        ctx.fillStyle = s.color;
        ctx.beginPath(); ctx.arc(x, Y(tops ? tops[n] : y), 3, 0, 2 * Math.PI); ctx.fill();
        const row = el("div", "row");
        const sw = el("i", "sw");
        sw.style.cssText = "display:inline-block;width:.6rem;height:.6rem;border-radius:50%;background:" + s.color;
        row.append(sw, el("span", "", s.name), el("b", "", this.opts.value(y)));
        rows.push(row);
      });
      const near = (v.t1 - v.t0) / 60;
      for (const m of v.markers) {
        if (Math.abs(m.t - v.times[i]) <= Math.max(near, state.interval)) {
          rows.push(el("div", "t", "drift detected: " + m.name + (m.n > 1 ? " (" + m.n + ")" : "")));
        }
      }
      this.tip.replaceChildren(...rows);
      this.tip.hidden = false;
      const tw = this.tip.offsetWidth;
      this.tip.style.left = (this.hoverX + 14 + tw < x1 ? this.hoverX + 14 : Math.max(0, this.hoverX - 14 - tw)) + "px";
    }
  }

  // as many decimals as the tick step needs (a step of 2.5 shows 77.5, not 78)
  function decimals(step) {
    let d = 0;
    while (d < 4 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6) d++;
    return d;
  }
  const accuracyTick = (t, step) => (t * 100).toFixed(decimals(step * 100)) + "%";
  const countTick = (t, step) => (t < 1e5 && decimals(step) > 0 ? t.toFixed(decimals(step)) : count(t));
  const charts = {
    accuracy: new Chart("chart-prequential", {range: "accuracy", tick: accuracyTick, value: (x) => pct(x, 2), empty: "no model tested yet"}),
    rolling: new Chart("chart-rolling", {range: "accuracy", tick: accuracyTick, value: (x) => pct(x, 2), empty: "no model tested yet"}),
    weights: new Chart("chart-weights", {range: "unit", stack: true, tick: (t, step) => t.toFixed(decimals(step)), value: (x) => fixed(x, 3), empty: "no members"}),
    rate: new Chart("chart-rate", {range: "count", tick: countTick, value: rate, fill: true, empty: "no events yet"}),
    lag: new Chart("chart-lag", {range: "count", tick: countTick, value: count, fill: true, empty: "no partition assigned yet"}),
    checkpoint: new Chart("chart-checkpoint", {range: "seconds", tick: (t) => duration(t).replace(".0 s", " s"), value: duration, fill: true, empty: "no checkpoint yet"}),
  };

  // ---- tiles, table, header --------------------------------------------------------------------
  function setText(id, text, cls) {
    const e = document.getElementById(id);
    if (e.textContent !== text) e.textContent = text;
    if (cls !== undefined) {
      e.classList.remove("warn", "bad");
      if (cls) e.classList.add(cls);
    }
  }

  // a long model name shrinks to fit its tile (down to 60%) before it is cut with an ellipsis
  function fit(e) {
    e.style.fontSize = "";
    const base = parseFloat(getComputedStyle(e).fontSize);
    for (let f = 1; e.scrollWidth > e.clientWidth && f > 0.6; ) {
      f -= 0.08;
      e.style.fontSize = base * f + "px";
    }
  }

  function renderTiles(d, last) {
    const models = last.models || {};
    const ens = models[ENSEMBLE] || {};
    setText("v-accuracy", pct(ens.accuracy, 1));
    setText("s-accuracy", isNum(ens.rolling_accuracy)
      ? "prequential · rolling " + pct(ens.rolling_accuracy, 1) : "prequential");

    let leader = null;
    for (const n of d.members) {
      if (models[n] && isNum(models[n].weight) && (!leader || models[n].weight > models[leader].weight)) leader = n;
    }
    const big = document.getElementById("v-leader");
    if (big.textContent !== (leader || "–")) {
      big.textContent = leader || "–";
      big.title = leader || "";
      big.style.color = leader ? colorOf(leader) : "";
      fit(big);
    }
    if (leader) {
      setText("s-leader", "weight " + fixed(models[leader].weight, 2) + " · rolling " + pct(models[leader].rolling_accuracy, 1));
    }

    // events/s over the last 5 s, smoother than one second
    const n = d.times.length, k = Math.max(0, n - 6);
    const totals = state.samples.slice(-6).map((s) => sumOf(s.events));
    let eps = null;
    if (n > 1 && d.times[n - 1] > d.times[k] && totals[totals.length - 1] >= totals[0]) {
      eps = (totals[totals.length - 1] - totals[0]) / (d.times[n - 1] - d.times[k]);
    }
    const ev = last.events || {};
    setText("v-rate", rate(eps));
    setText("s-rate", count(sumOf(ev)) + " events" +
      (ev.dead_lettered ? " · " + count(ev.dead_lettered) + " dead-lettered" : "") +
      (ev.unlabelled ? " · " + count(ev.unlabelled) + " unlabelled" : ""));

    const parts = Object.keys(last.lag || {}).length;
    setText("v-lag", parts ? count(sumOf(last.lag)) : "–");
    setText("s-lag", parts ? "behind · " + parts + (parts === 1 ? " partition" : " partitions") : "no partition assigned yet");

    let drifts = 0, recent = null;
    for (const name of d.members) {
      const m = models[name];
      if (!m) continue;
      drifts += m.drifts || 0;
      if (isNum(m.last_drift_time) && (!recent || m.last_drift_time > recent.t)) recent = {t: m.last_drift_time, name};
    }
    setText("v-drifts", count(drifts));
    setText("s-drifts", recent ? "last " + duration(Math.max(0, last.t - recent.t)) + " ago · " + recent.name : "none yet");

    const cp = last.checkpoint;
    const age = cp && isNum(cp.age_seconds) ? cp.age_seconds : null;
    setText("v-checkpoint", duration(age), age === null ? "" : age > 300 ? "bad" : age > 60 ? "warn" : "");
    setText("s-checkpoint", cp === undefined ? "not reported by this service"
      : age === null ? "no checkpoint yet" : "since the last checkpoint");
    return eps;
  }

  function renderTable(d, last) {
    const body = document.getElementById("models");
    const names = d.names.filter((n) => last.models && last.models[n]);
    names.sort((a, b) => (a === ENSEMBLE ? -1 : 0) - (b === ENSEMBLE ? -1 : 0));
    if (body.dataset.names !== names.join("\u0001")) {
      body.replaceChildren(...names.map((name) => {
        const tr = el("tr", name === ENSEMBLE ? "ensemble" : "");
        tr.dataset.model = name;
        const first = el("td");
        const sw = el("i", "sw");
        sw.style.background = colorOf(name);
        first.append(sw, document.createTextNode(name));
        const weight = el("td");
        if (name === ENSEMBLE) weight.append(el("span", "muted", "weighted vote"));
        else {
          const wrap = el("div", "wbar"), bar = el("div", "bar"), fill = el("i");
          fill.style.background = colorOf(name);
          bar.append(fill);
          wrap.append(bar, el("span", "wv", "–"));
          weight.append(wrap);
        }
        tr.append(first, el("td", "acc"), el("td", "roll"), el("td", "f1"), weight,
          el("td", "tested"), el("td", "learned narrow-hide"), el("td", "drifts"),
          el("td", "resets narrow-hide"), el("td", "since"));
        return tr;
      }));
      body.dataset.names = names.join("\u0001");
    }
    for (const tr of body.children) {
      const m = last.models[tr.dataset.model];
      tr.querySelector(".acc").textContent = pct(m.accuracy, 2);
      tr.querySelector(".roll").textContent = pct(m.rolling_accuracy, 2);
      tr.querySelector(".f1").textContent = pct(m.f1, 2);
      const resets = m.resets ? Object.values(m.resets).reduce((a, b) => a + b, 0) : 0;
      tr.querySelector(".resets").textContent = count(resets);
      tr.querySelector(".tested").textContent = count(m.tested);
      tr.querySelector(".learned").textContent = count(m.learned);
      tr.querySelector(".drifts").textContent = count(m.drifts);
      tr.querySelector(".since").textContent = isNum(m.last_drift_time)
        ? duration(Math.max(0, last.t - m.last_drift_time)) + " ago" : "–";
      const fill = tr.querySelector(".bar i");
      if (fill) {
        fill.style.width = (isNum(m.weight) ? Math.max(0, Math.min(1, m.weight)) * 100 : 0) + "%";
        tr.querySelector(".wv").textContent = fixed(m.weight, 3);
      }
    }
  }

  function render() {
    const pill = document.getElementById("state");
    const all = state.samples;
    if (!all.length) {
      pill.className = "pill " + (state.online === false ? "down" : "wait");
      pill.textContent = state.online === false ? "unreachable" : "waiting for the service";
      for (const c of Object.values(charts)) c.update(null);
      return;
    }
    const last = all[all.length - 1];
    const t1 = last.t, from = t1 - state.window;
    let start = 0;
    while (start < all.length - 1 && all[start].t < from) start++;
    const d = derive(all);
    const cut = (series) => series.map((s) => ({...s, values: s.values.slice(start)}));
    const times = d.times.slice(start);
    const t0 = times.length > 1 ? Math.max(times[0], from) : t1 - Math.max(state.interval, 1);
    const view = (series, markers) => ({t0, t1, times, series: cut(series), markers: markers || []});
    charts.accuracy.update(view(d.accuracy, d.markers));
    charts.rolling.update(view(d.rolling, d.markers));
    charts.weights.update(view(d.weights));
    charts.rate.update(view(d.rate.filter((s) => s.main || s.values.some((x) => x > 0))));
    charts.lag.update(view(d.lag));
    charts.checkpoint.update(view(d.checkpoint));
    const eps = renderTiles(d, last);
    renderTable(d, last);

    if (state.online === false) {
      pill.className = "pill down";
      pill.textContent = "unreachable";
    } else if (eps !== null && eps > 0) {
      pill.className = "pill live";
      pill.textContent = "live";
    } else {
      pill.className = "pill idle";
      pill.textContent = "idle";
    }
    // This instance's partitions (in a fleet, each instance owns some; in partition scope the
    // figures above are over their learners).
    const owned = last.partitions || [];
    const scope = last.scope === "partition" ? "per-partition state" : "global state";
    setText("meta", "up " + duration(last.uptime_seconds) + " · " + count(sumOf(last.events)) +
      " events · " + d.members.length + " models · " + scope + " · " +
      (owned.length ? "partitions " + owned.join(", ") : "no partition (standing by)") +
      " · updated " + clock(t1, true));
  }

  // ---- polling ---------------------------------------------------------------------------------
  async function poll() {
    const began = performance.now();
    const newest = state.samples.length ? state.samples[state.samples.length - 1].t : null;
    try {
      const res = await fetch(newest === null ? "/api/history" : "/api/history?since=" + newest,
        {cache: "no-store"});
      if (!res.ok) throw new Error("HTTP " + res.status);
      const body = await res.json();
      state.interval = body.interval_seconds || 1;
      state.retention = body.retention_seconds || 900;
      for (const s of body.samples || []) {
        if (newest === null || s.t > state.samples[state.samples.length - 1].t) state.samples.push(s);
      }
      const keep = state.samples.length ? state.samples[state.samples.length - 1].t - state.retention : 0;
      let drop = 0;
      while (drop < state.samples.length && state.samples[drop].t < keep) drop++;
      if (drop) state.samples.splice(0, drop);
      state.online = true;
    } catch (err) {
      state.online = false;
    }
    try {
      render();
    } finally {
      window.setTimeout(poll, Math.max(200, 1000 - (performance.now() - began)));
    }
  }

  for (const b of document.querySelectorAll(".range button")) {
    b.addEventListener("click", () => {
      state.window = Number(b.dataset.window);
      for (const o of document.querySelectorAll(".range button")) o.classList.toggle("on", o === b);
      render();
    });
  }
  window.addEventListener("resize", () => fit(document.getElementById("v-leader")));
  poll();
})();
