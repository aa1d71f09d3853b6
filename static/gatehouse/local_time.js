/* Shows every <time class="local-time" datetime="…"> in the viewer's timezone; the server
   renders UTC, which stays in the element's title (hover). */
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short",
  });

  function utcTitle(date) {
    return date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function localize(root) {
    (root || document).querySelectorAll("time.local-time:not([data-localized])").forEach(function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) {
        return;
      }
      element.textContent = format.format(date);
      element.title = utcTitle(date);
      element.dataset.localized = "1";
    });
  }

  function timeElement(isoString) {
    var element = document.createElement("time");
    element.className = "local-time";
    element.setAttribute("datetime", isoString);
    var date = new Date(isoString);
    element.textContent = isNaN(date.getTime()) ? isoString : utcTitle(date);
    return element;
  }

  window.gatehouseTime = { localize: localize, element: timeElement };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localize(); });
  } else {
    localize();
  }
})();
