// Passkeys and security keys (WebAuthn) under the strict CSP: no inline script. The
// server writes each ceremony's options into <script type="application/json">; this
// file parses them, asks the browser (navigator.credentials.create/get), writes
// credential.toJSON() into the form's hidden "credential" field and submits the normal
// form, so its CSRF token goes with it. Without this script (or without WebAuthn in the
// browser) the passkey parts stay hidden and every page works as before.
//
// Markup it reads:
//   [data-webauthn]          hidden until the browser can use passkeys
//   [data-webauthn-missing]  shown only where it cannot
//   button[data-webauthn-ceremony="create"|"get"] inside a form with a hidden
//     input[name=credential]; data-webauthn-options="ID" names the JSON block, or
//     data-webauthn-options-by="FIELD" takes it from the checked radio FIELD
//     ("webauthn-options-" + its value).
//   [data-webauthn-status]   where a failure is told (its data-failed text)
//   form[data-webauthn-autofill="ID"]  also offers the passkeys in the username
//     field's autofill: a conditional get() with the options of block ID, started on
//     load, answered by picking a passkey there; aborted before a button's own
//     request (a browser runs one at a time), started again if that one fails.
"use strict";
(function () {
  var WebAuthnUI = {};

  WebAuthnUI.supported = function () {
    return Boolean(
      window.PublicKeyCredential &&
        navigator.credentials &&
        typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
        typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function"
    );
  };

  // The options the server wrote into <script type="application/json" id="...">.
  WebAuthnUI.options = function (id) {
    var block = document.getElementById(id);
    return block ? JSON.parse(block.textContent) : null;
  };

  WebAuthnUI.create = function (json) {
    var publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(json);
    return navigator.credentials.create({ publicKey: publicKey });
  };

  // `extra`: more arguments for get() (such as mediation and signal, for autofill).
  WebAuthnUI.get = function (json, extra) {
    var args = { publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(json) };
    Object.keys(extra || {}).forEach(function (key) { args[key] = extra[key]; });
    return navigator.credentials.get(args);
  };

  WebAuthnUI.submit = function (form, credential) {
    form.querySelector("input[name=credential]").value = JSON.stringify(credential.toJSON());
    form.submit();
  };

  WebAuthnUI.tell = function (form, error) {
    var status = form.querySelector("[data-webauthn-status]") ||
      document.querySelector("[data-webauthn-status]");
    if (status) status.textContent = status.getAttribute("data-failed") || String(error);
  };

  WebAuthnUI.optionsFor = function (button) {
    var by = button.getAttribute("data-webauthn-options-by");
    if (by) {
      var checked = button.form.querySelector("input[name='" + by + "']:checked");
      return WebAuthnUI.options("webauthn-options-" + (checked ? checked.value : ""));
    }
    return WebAuthnUI.options(button.getAttribute("data-webauthn-options"));
  };

  var pendingAutofill = null;  // the AbortController of the conditional request

  WebAuthnUI.stopAutofill = function () {
    if (pendingAutofill) {
      pendingAutofill.abort();
      pendingAutofill = null;
    }
  };

  WebAuthnUI.autofill = function (form) {
    var json = WebAuthnUI.options(form.getAttribute("data-webauthn-autofill"));
    if (!json || typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) return;
      WebAuthnUI.stopAutofill();
      var controller = new AbortController();
      pendingAutofill = controller;
      WebAuthnUI.get(json, { mediation: "conditional", signal: controller.signal }).then(
        function (credential) { if (credential) WebAuthnUI.submit(form, credential); },
        function () {}  // aborted for a button's request, or dismissed: nothing to tell
      );
    });
  };

  WebAuthnUI.run = function (button) {
    var form = button.form;
    if (!form.reportValidity()) return;  // a name first, where one is asked for
    var json = WebAuthnUI.optionsFor(button);
    if (!json) return;
    var create = button.getAttribute("data-webauthn-ceremony") === "create";
    WebAuthnUI.stopAutofill();
    button.disabled = true;
    var asked = create ? WebAuthnUI.create(json) : WebAuthnUI.get(json);
    asked.then(
      function (credential) { WebAuthnUI.submit(form, credential); },
      function (error) {
        button.disabled = false;
        WebAuthnUI.tell(form, error);
        if (form.hasAttribute("data-webauthn-autofill")) WebAuthnUI.autofill(form);
      }
    );
  };

  WebAuthnUI.start = function () {
    if (!WebAuthnUI.supported()) return;
    document.querySelectorAll("[data-webauthn]").forEach(function (part) { part.hidden = false; });
    document.querySelectorAll("[data-webauthn-missing]").forEach(function (part) {
      part.hidden = true;
    });
    document.querySelectorAll("button[data-webauthn-ceremony]").forEach(function (button) {
      button.addEventListener("click", function () { WebAuthnUI.run(button); });
    });
    document.querySelectorAll("form[data-webauthn-autofill]").forEach(WebAuthnUI.autofill);
  };

  window.WebAuthnUI = WebAuthnUI;
  document.addEventListener("DOMContentLoaded", WebAuthnUI.start);
})();
