// Arena page behaviour: prompt counter, polling a battle until both answers arrive, voting in
// place with keyboard shortcuts, and the reveal. Without JavaScript the forms still work.
(function () {
  "use strict";

  var MESSAGES = {
    already_voted: "This battle already has a different vote; each battle takes one vote. Start a new battle.",
    battle_not_ready: "Please wait until both answers are complete, then vote.",
    battle_not_found: "This battle does not exist (the link may be incomplete). Start a new battle.",
    invalid_winner: "That vote was not understood. Please use one of the four buttons.",
    permission_denied: "Your session has expired. Reload the page and vote again.",
    not_enough_contestants: "There are not enough models online right now. Please try again later.",
    battle_generating: "Please wait until both answers are complete, then send your follow-up.",
    battle_closed: "This battle has its vote. Start a new battle to keep chatting.",
    max_turns: "This battle has reached its maximum number of turns: please vote.",
  };
  var WINNER_LABELS = {
    "model_a": "A is better", "model_b": "B is better", "tie": "Tie", "tie (bothbad)": "Both are bad",
  };

  function setupPromptForm() {
    var prompt = document.getElementById("prompt");
    var counter = document.getElementById("prompt-count");
    if (!prompt || !counter) return;
    var max = prompt.dataset.max;
    var update = function () { counter.textContent = prompt.value.length + " / " + max + " characters"; };
    prompt.addEventListener("input", update);
    prompt.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        var start = document.getElementById("start-battle");
        if (start) start.click();
      }
    });
    update();
  }

  function friendlyError(status, body, headers) {
    var code = body && body.error ? body.error.code : null;
    if (status === 429 || code === "rate_limited") {
      var wait = parseInt(headers.get("Retry-After") || "60", 10);
      var minutes = Math.max(1, Math.ceil(wait / 60));
      return "You are voting very fast. Please take a break and try again in about " + minutes + " minute" + (minutes === 1 ? "" : "s") + ".";
    }
    if (code && MESSAGES[code]) return MESSAGES[code];
    if (body && body.error && body.error.message) return body.error.message;
    return "Something went wrong (HTTP " + status + "). Please try again.";
  }

  function setupBattle(root) {
    var status = root.dataset.status;
    var statusText = document.getElementById("status-text");
    var elapsed = document.getElementById("elapsed");
    var message = document.getElementById("message");
    var buttons = Array.prototype.slice.call(root.querySelectorAll("#vote-form button"));
    var csrf = root.querySelector("input[name=csrfmiddlewaretoken]");
    var started = Date.now();
    var delay = 400;
    var voting = false;

    function showMessage(text) {
      message.textContent = text;
      message.hidden = !text;
    }

    function setStatus(text) {
      document.getElementById("status").innerHTML = "";
      var span = document.createElement("span");
      span.id = "status-text";
      span.textContent = text;
      document.getElementById("status").appendChild(span);
    }

    function showPartial(side, text) {
      // Streamed text so far, shown as plain text until the whole answer is rendered.
      var body = root.querySelector('.answer-body[data-side="' + side + '"]');
      if (!text || body.dataset.filled) return;
      var p = body.querySelector("p.streaming");
      if (!p) {
        body.innerHTML = "";
        p = document.createElement("p");
        p.className = "streaming";
        body.appendChild(p);
      }
      p.textContent = text;
    }

    function showAnswer(side, answer) {
      var body = root.querySelector('.answer-body[data-side="' + side + '"]');
      if (!answer || body.dataset.filled) return;
      // answer.html is Markdown rendered and sanitised on the server (arena/rendering.py).
      body.innerHTML = answer.html || "";
      if (!answer.text) {
        var empty = document.createElement("p");
        empty.className = "muted";
        empty.textContent = "(empty answer)";
        body.appendChild(empty);
      }
      body.dataset.filled = "1";
    }

    function showReveal(vote) {
      document.getElementById("reveal-a").textContent = vote.reveal.model_a.name;
      document.getElementById("reveal-a-org").textContent = vote.reveal.model_a.organization;
      document.getElementById("reveal-b").textContent = vote.reveal.model_b.name;
      document.getElementById("reveal-b-org").textContent = vote.reveal.model_b.organization;
      document.getElementById("reveal-winner").textContent = WINNER_LABELS[vote.winner] || vote.winner;
      document.getElementById("vote-form").hidden = true;
      var followUp = document.getElementById("follow-up-form");
      if (followUp) followUp.hidden = true;
      document.getElementById("reveal").hidden = false;
      setStatus("Thanks for your vote!");
      status = "voted";
      document.getElementById("new-battle").focus();
    }

    function render(data) {
      showPartial("a", data.partial_a);
      showPartial("b", data.partial_b);
      showAnswer("a", data.answer_a);
      showAnswer("b", data.answer_b);
      status = data.status;
      var followUp = document.getElementById("follow-up-form");
      if (status === "ready") {
        setStatus("Both answers are ready: which one is better?");
        buttons.forEach(function (b) { b.disabled = false; });
        if (followUp && followUp.dataset.allowed !== "no") followUp.hidden = false;
      } else if (status === "failed") {
        // A failure mid-answer: a friendly word, no vote buttons, nothing half-counted.
        setStatus("Sorry, a model failed while answering. No vote is needed: please start a new battle.");
        if (followUp) followUp.hidden = true;
      } else if (status === "voted" && data.vote) {
        showReveal(data.vote);
      } else if (status === "generating" && statusText) {
        var waiting = data.answer_a ? "B" : (data.answer_b ? "A" : "A and B");
        statusText.textContent = "Generating answer " + waiting + "…";
        var seconds = Math.round((Date.now() - started) / 1000);
        elapsed.textContent = seconds + " s" + (seconds > 60 ? " (the model workers are busy; still waiting)" : "");
      }
    }

    function poll() {
      fetch(root.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          return response.json().then(function (body) { return { response: response, body: body }; });
        })
        .then(function (result) {
          if (!result.response.ok) {
            showMessage(friendlyError(result.response.status, result.body, result.response.headers));
            return;
          }
          showMessage("");
          render(result.body);
          if (status === "generating") schedule();
        })
        .catch(function () {
          showMessage("Lost contact with the server; retrying…");
          schedule();
        });
    }

    function schedule() {
      delay = Math.min(800, delay * 1.2);  // answers stream: poll often while generating
      window.setTimeout(poll, delay);
    }

    function vote(winner) {
      if (voting || status !== "ready") return;
      voting = true;
      buttons.forEach(function (b) { b.disabled = true; b.classList.toggle("chosen", b.value === winner); });
      fetch(root.dataset.voteApi, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf.value },
        body: JSON.stringify({ winner: winner }),
      })
        .then(function (response) {
          return response.json().then(function (body) { return { response: response, body: body }; });
        })
        .then(function (result) {
          voting = false;
          if (result.response.ok) {
            showMessage("");
            showReveal(result.body);
          } else {
            showMessage(friendlyError(result.response.status, result.body, result.response.headers));
            buttons.forEach(function (b) { b.disabled = false; });
          }
        })
        .catch(function () {
          voting = false;
          showMessage("Could not reach the server; your vote was not sent. Please try again.");
          buttons.forEach(function (b) { b.disabled = false; });
        });
    }

    function sendFollowUp(event) {
      event.preventDefault();
      var field = document.getElementById("follow-up");
      var text = field.value.trim();
      if (!text || status !== "ready") return;
      document.getElementById("send-follow-up").disabled = true;
      fetch(root.dataset.followUpApi, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf.value },
        body: JSON.stringify({ message: text }),
      })
        .then(function (response) {
          return response.json().then(function (body) { return { response: response, body: body }; });
        })
        .then(function (result) {
          if (result.response.ok) {
            window.location.reload();  // the page shows the earlier turns and streams the new one
            return;
          }
          showMessage(friendlyError(result.response.status, result.body, result.response.headers));
          document.getElementById("send-follow-up").disabled = false;
        })
        .catch(function () {
          showMessage("Could not reach the server; your message was not sent. Please try again.");
          document.getElementById("send-follow-up").disabled = false;
        });
    }

    var followUpForm = document.getElementById("follow-up-form");
    if (followUpForm) {
      if (followUpForm.hidden && status === "ready") followUpForm.dataset.allowed = "no";
      followUpForm.addEventListener("submit", sendFollowUp);
    }
    document.getElementById("vote-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var winner = event.submitter ? event.submitter.value : null;
      if (winner) vote(winner);
    });
    document.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || event.ctrlKey || event.metaKey || event.altKey) return;
      var button = buttons.filter(function (b) { return b.dataset.key === event.key; })[0];
      if (button) {
        event.preventDefault();
        vote(button.value);
      } else if ((event.key === "n" || event.key === "N") && status !== "generating") {
        window.location.href = document.getElementById("new-battle").href;
      }
    });
    if (status === "generating") schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupPromptForm();
    var root = document.getElementById("battle");
    if (root) setupBattle(root);
  });
})();
