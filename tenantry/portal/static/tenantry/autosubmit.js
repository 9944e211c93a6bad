// Forms marked data-autosubmit are sent as soon as the page is shown (Connect).
document.querySelectorAll("form[data-autosubmit]").forEach((form) => form.submit());
