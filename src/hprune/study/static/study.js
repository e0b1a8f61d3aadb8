// The Next button stays disabled until every question on the page is answered
// (the radios are `required` too, so the form cannot be sent without script either),
// and is disabled again once pressed so that a double click sends one answer.
document.querySelectorAll("form.step-form").forEach(function (form) {
  var next = form.querySelector("button[type=submit]");
  var update = function () { next.disabled = !form.checkValidity(); };
  form.addEventListener("change", update);
  form.addEventListener("submit", function () { setTimeout(function () { next.disabled = true; }, 0); });
  update();
});
