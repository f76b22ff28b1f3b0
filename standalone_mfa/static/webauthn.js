// Passkeys and security keys under the strict CSP: no inline script. Each ceremony is a
// normal form (CSRF token included) marked data-webauthn="get" or "create", holding its
// options in a <script type="application/json" class="webauthn-options"> block, a hidden
// field named "credential" and a start button (data-webauthn-start). The browser's
// answer (credential.toJSON()) goes into the field and the form is submitted. A form
// with data-webauthn-autofill also offers passkeys in the username field's autofill (a
// conditional request started on load, aborted before the button's own request).
// Forms stay hidden where the browser cannot use WebAuthn: every page works without.
"use strict";
(function () {
  var conditional = null; // the AbortController of the pending autofill request

  function supported() {
    return Boolean(
      window.PublicKeyCredential &&
        PublicKeyCredential.parseRequestOptionsFromJSON &&
        PublicKeyCredential.parseCreationOptionsFromJSON &&
        navigator.credentials
    );
  }

  function optionsOf(form) {
    var block = form.querySelector("script.webauthn-options");
    return JSON.parse(block.textContent);
  }

  function ask(form, mediation, signal) {
    var json = optionsOf(form);
    if (form.getAttribute("data-webauthn") === "create") {
      return navigator.credentials.create({
        publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(json),
      });
    }
    var args = { publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(json) };
    if (mediation) {
      args.mediation = mediation;
      args.signal = signal;
    }
    return navigator.credentials.get(args);
  }

  function send(form, credential) {
    form.querySelector('input[name="credential"]').value = JSON.stringify(credential.toJSON());
    form.submit();
  }

  function showFailure(form) {
    var status = form.querySelector(".webauthn-status");
    if (!status) return;
    status.textContent = status.getAttribute("data-failed");
    status.hidden = false;
  }

  function abortConditional() {
    if (conditional) {
      conditional.abort();
      conditional = null;
    }
  }

  function startConditional(form) {
    if (!PublicKeyCredential.isConditionalMediationAvailable) return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) return;
      abortConditional();
      var controller = new AbortController();
      conditional = controller;
      ask(form, "conditional", controller.signal).then(
        function (credential) {
          if (credential) send(form, credential);
        },
        function () {} // aborted for the button, or dismissed: nothing to say
      );
    });
  }

  function startModal(form, button) {
    abortConditional(); // one request at a time ("A request is already pending")
    button.disabled = true;
    ask(form).then(
      function (credential) {
        send(form, credential);
      },
      function () {
        button.disabled = false;
        showFailure(form);
        if (form.hasAttribute("data-webauthn-autofill")) startConditional(form);
      }
    );
  }

  function setUp(form) {
    var button = form.querySelector("[data-webauthn-start]");
    form.hidden = false;
    if (button) {
      button.addEventListener("click", function () {
        startModal(form, button);
      });
    }
    if (form.hasAttribute("data-webauthn-autofill")) startConditional(form);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!supported()) return;
    document.querySelectorAll("form[data-webauthn]").forEach(setUp);
  });
})();
