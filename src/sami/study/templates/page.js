// The MT-Bench browser's filters and text search: shows or hides the question cards already on the page.
// A card stays when its category and number of flipped principles match and at least one of its verdicts
// matches the judge, pairing, outcome and "orders disagree" chosen, and when its text holds every searched word.
// Inside the cards, the verdicts of other judges and pairings than the ones chosen are hidden, and so are the
// answers of models outside a chosen pairing.
(function () {
  "use strict";
  function setUp(section) {
    var form = section.querySelector("form.filters");
    var count = form.querySelector(".count");
    var cards = Array.prototype.slice.call(section.querySelectorAll("article.q"));
    var verdicts = cards.map(function (card) { return JSON.parse(card.getAttribute("data-verdicts")); });
    var texts = null;  // read on the first search only: the cards' text is large
    function value(name) { return form.elements[name].value; }
    function keep(card, i, words) {
      if (value("category") && card.getAttribute("data-category") !== value("category")) return false;
      if (value("flipped") && card.getAttribute("data-flipped") !== value("flipped")) return false;
      var judge = value("judge"), pair = value("pair"), outcome = value("outcome");
      var disagree = form.elements.disagree.checked;
      if (judge || pair || outcome || disagree) {
        var any = verdicts[i].some(function (v) {
          return (!judge || v.judge === judge) && (!pair || v.pair === pair) &&
            (!outcome || v.outcome === outcome) && (!disagree || v.disagree);
        });
        if (!any) return false;
      }
      if (words.length) {
        if (texts === null) texts = cards.map(function (c) { return c.textContent.toLowerCase(); });
        return words.every(function (w) { return texts[i].indexOf(w) !== -1; });
      }
      return true;
    }
    var rows = Array.prototype.slice.call(section.querySelectorAll("table.verdicts tbody tr"));
    var tables = Array.prototype.slice.call(section.querySelectorAll("table.verdicts"));
    var answers = Array.prototype.slice.call(section.querySelectorAll(".answer[data-model]"));
    var grids = Array.prototype.slice.call(section.querySelectorAll(".answers"));
    var columns = grids.map(function (grid) { return grid.style.getPropertyValue("--n"); });
    function apply() {
      var words = value("search").toLowerCase().split(/\s+/).filter(Boolean);
      var judge = value("judge"), pair = value("pair");
      rows.forEach(function (row) {  // inside a question, only the chosen judge's and pairing's verdicts
        row.hidden = (judge && row.getAttribute("data-judge") !== judge) ||
          (pair && row.getAttribute("data-pair") !== pair);
      });
      tables.forEach(function (table) {  // a turn none of whose verdicts is left shows no empty table
        table.hidden = !Array.prototype.some.call(table.tBodies[0].rows, function (row) { return !row.hidden; });
      });
      // a chosen pairing puts its two models' answers side by side, the other models' out of the way
      var pairing = pair ? pair.split(" vs ") : null;
      answers.forEach(function (answer) {
        answer.hidden = pairing !== null && pairing.indexOf(answer.getAttribute("data-model")) === -1;
      });
      grids.forEach(function (grid, i) { grid.style.setProperty("--n", pairing ? "2" : columns[i]); });
      var shown = 0;
      cards.forEach(function (card, i) {
        var ok = keep(card, i, words);
        card.hidden = !ok;
        if (ok) shown += 1;
      });
      count.textContent = shown + " of " + cards.length + " questions";
    }
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    apply();
  }
  Array.prototype.forEach.call(document.querySelectorAll("section.browser"), setUp);
})();
