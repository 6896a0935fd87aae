/* Passkeys and security keys (WebAuthn) on the hub's pages; the rules are app/mfa/passkeys.py.
 *
 * A form marked data-passkey="create" (registration) or "get" (an assertion) runs its ceremony
 * when submitted: it POSTs to its data-options-url (the form's CSRF token in X-CSRFToken) for the
 * options, calls navigator.credentials, writes the browser's answer as JSON into the form's
 * hidden "credential" field, and submits the form, which the server verifies. A "get" form marked
 * data-conditional also starts a conditional request when the page loads (mediation
 * "conditional": the browser offers its passkeys in the autofill of the field marked
 * autocomplete="username webauthn"); pressing the button cancels it for a modal one.
 * The forms stay hidden where the browser has no WebAuthn. No library, no CDN.
 */
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function toBuffer(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice(0, (4 - (base64.length % 4)) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (descriptor) {
      return Object.assign({}, descriptor, { id: toBuffer(descriptor.id) });
    });
  }

  function creationOptions(options) {
    options.challenge = toBuffer(options.challenge);
    options.user.id = toBuffer(options.user.id);
    options.excludeCredentials = descriptors(options.excludeCredentials);
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBuffer(options.challenge);
    options.allowCredentials = descriptors(options.allowCredentials);
    return options;
  }

  /* The JSON of a PublicKeyCredential (WebAuthn L3 RegistrationResponseJSON and
     AuthenticationResponseJSON), which app/mfa/passkeys.py reads. */
  function encode(credential) {
    var response = credential.response;
    var answer = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      answer.response.attestationObject = toBase64url(response.attestationObject);
      answer.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      answer.response.authenticatorData = toBase64url(response.authenticatorData);
      answer.response.signature = toBase64url(response.signature);
      if (response.userHandle) {
        answer.response.userHandle = toBase64url(response.userHandle);
      }
    }
    return JSON.stringify(answer);
  }

  function fetchOptions(form) {
    var token = form.querySelector("input[name=csrf_token]");
    return fetch(form.dataset.optionsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token ? token.value : "", Accept: "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          if (body.confirm) {
            window.location.assign(body.confirm); // the login is not recent: confirm it first
          }
          throw new Error(body.detail || "The passkey request failed (" + response.status + ").");
        }
        return body;
      });
    });
  }

  var conditional = null; // the AbortController of the page's pending conditional request

  function say(form, message) {
    var place = form.querySelector("[data-passkey-error]");
    if (place) {
      place.textContent = message;
      place.hidden = false;
    }
  }

  function run(form, mediation) {
    return fetchOptions(form).then(function (options) {
      if (form.dataset.passkey === "create") {
        return navigator.credentials.create({ publicKey: creationOptions(options) });
      }
      var request = { publicKey: requestOptions(options) };
      if (mediation) {
        conditional = new AbortController();
        request.mediation = mediation;
        request.signal = conditional.signal;
      }
      return navigator.credentials.get(request);
    }).then(function (credential) {
      if (credential) {
        form.querySelector("input[name=credential]").value = encode(credential);
        HTMLFormElement.prototype.submit.call(form); // not form.submit: a field may be named "submit"
      }
    }).catch(function (error) {
      if (mediation || (error && error.name === "AbortError")) {
        return; // a conditional request ended (or gave way to the button): nothing to say
      }
      if (error && error.name === "NotAllowedError") {
        say(form, "The passkey request was cancelled or timed out. Try again, or use another way.");
      } else if (error && error.name === "InvalidStateError") {
        say(form, "This passkey or security key is registered already.");
      } else {
        say(form, (error && error.message) || String(error));
      }
    });
  }

  document.querySelectorAll("[data-passkey-unsupported]").forEach(function (element) {
    element.hidden = true;
  });
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (conditional) {
        conditional.abort();
        conditional = null;
      }
      run(form, null);
    });
    if (form.dataset.passkey === "get" && "conditional" in form.dataset &&
        PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (available) {
          run(form, "conditional");
        }
      });
    }
  });
})();
