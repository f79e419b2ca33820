"""The upload page served at ``/``: pick an image, see the top-5. Self-contained (no
external scripts, styles or fonts), so it works on a machine without internet access.

The page says what is served (model, weights, engine, precision, preprocessing) and warns
in a banner when the weights are random, so that a confident-looking top-5 from an
untrained network is never mistaken for a prediction.
"""

from __future__ import annotations

from html import escape

UPLOAD_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>res2net: {{MODEL}}</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem;
         color: #222; }
  h1 { font-size: 1.4rem; } code { background: #eee; padding: 0 .2rem; }
  form { display: grid; gap: .6rem; margin: 1rem 0; }
  #preview { max-width: 100%; max-height: 18rem; display: none; margin: .5rem 0; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; }
  td.score { width: 40%; }
  .bar { background: #4a7; height: .8rem; }
  #status { color: #555; } #status.error { color: #b00; }
  #random-weights { background: #fff3cd; border: 2px solid #c90; color: #5c3c00;
                    padding: .6rem .8rem; margin: 1rem 0; font-weight: 600; }
  #served th { width: 9rem; color: #555; font-weight: normal; }
</style>
</head>
<body>
<h1>Classify an image with <code>{{MODEL}}</code></h1>
{{BANNER}}
<table id="served">{{SERVED}}</table>
<form id="form">
  <input id="file" type="file" accept="image/*" required>
  <input id="key" type="password" placeholder="API key (only if the server needs one)">
  <button id="submit" type="submit">Classify</button>
</form>
<img id="preview" alt="the uploaded image">
<p id="status"></p>
<table id="results" hidden>
  <thead><tr><th>#</th><th>label</th><th>class id</th><th>probability</th></tr></thead>
  <tbody></tbody>
</table>
<script>
const $ = (id) => document.getElementById(id);
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) { $("preview").src = URL.createObjectURL(file); $("preview").style.display = "block"; }
});
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new FormData();
  body.append("image", $("file").files[0]);
  const headers = $("key").value ? {"X-API-Key": $("key").value} : {};
  $("status").className = ""; $("status").textContent = "classifying...";
  $("results").hidden = true;
  try {
    const response = await fetch("v1/classify?topk=5", {method: "POST", body, headers});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    const top = data.predictions[0];
    if (top.error) throw new Error(top.error);
    show(top);
    $("status").textContent = "top-5 of " + data.model_name;
  } catch (err) {
    $("status").className = "error"; $("status").textContent = "error: " + err.message;
  }
});
function show(top) {
  const rows = $("results").querySelector("tbody");
  rows.replaceChildren();
  top.labels.forEach((label, i) => {
    const row = rows.insertRow();
    row.className = "prediction";
    row.insertCell().textContent = i + 1;
    row.insertCell().textContent = label;
    row.insertCell().textContent = top.class_ids[i];
    const cell = row.insertCell();
    cell.className = "score";
    const bar = document.createElement("div");
    bar.className = "bar"; bar.style.width = (100 * top.scores[i]).toFixed(1) + "%";
    cell.append((100 * top.scores[i]).toFixed(2) + " %", bar);
  });
  $("results").hidden = false;
}
</script>
</body>
</html>
"""


RANDOM_BANNER = (
    '<div id="random-weights" role="alert">Warning: this server runs <em>random weights</em> '
    "(started without a weights file). Its predictions mean nothing, however confident "
    "they look. Restart it with <code>--weights FILE</code> or published weights.</div>"
)


def render_page(
    model: str, *, weights: str, engine: str, precision: str, preprocess: str, random: bool
) -> str:
    """The upload page for one served model; every value is HTML-escaped."""
    rows = [
        ("model", model),
        ("weights", weights),
        ("engine", engine),
        ("precision", precision),
        ("preprocessing", preprocess),
    ]
    served = "".join(
        f'<tr><th>{key}</th><td id="served-{key}">{escape(value)}</td></tr>' for key, value in rows
    )
    return (
        UPLOAD_PAGE.replace("{{BANNER}}", RANDOM_BANNER if random else "")
        .replace("{{SERVED}}", served)
        .replace("{{MODEL}}", escape(model))
    )
